"""Every command takes --json: '-' puts the JSON alone on stdout (the text goes to stderr)."""

from __future__ import annotations

import json

import pytest

from edgesr.cli import main

TINY = ["--model", "ecbsr", "--variant", "M1C4", "--scale", "2"]


@pytest.mark.slow
def test_every_command_writes_json_to_stdout(hr_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    image = next(hr_folder.iterdir())
    commands = {
        "models": ["models", "--model", "ecbsr"],
        "export": ["export", *TINY, "--format", "onnx", "-o", "m.onnx"],
        "inspect": ["inspect", "m.onnx"],
        "verify": ["verify", *TINY, "--precision", "fp32", "--sizes", "20x24"],
        "bench": ["bench", "--model-file", "m.onnx", "--input", "24x32", "--warmup", "0", "--runs", "2",
                  "--rounds", "1"],
        "eval": ["eval", "--model-file", "m.onnx", "--data", str(hr_folder)],
        "upscale": ["upscale", str(image), "-o", "sr.png", "--model-file", "m.onnx"],
        "train": ["train", *TINY, "--data", str(hr_folder), "--iters", "1", "--batch", "2", "--patch", "8",
                  "-o", "t.pt"],
    }
    for name, argv in commands.items():
        assert main([*argv, "--json", "-"]) == 0, name
        document = json.loads(capsys.readouterr().out)  # nothing else on stdout
        assert isinstance(document, dict) and document, name
