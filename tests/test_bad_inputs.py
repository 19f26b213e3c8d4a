"""Every class of bad input, fault and signal, driven through the real `edgesr` command in a
subprocess, as a user meets it. Each must end with exactly one stderr line naming the problem
and what to do, no traceback, the contract's exit code (2 user error, 1 tool or environment
error, 143 SIGTERM, 129 SIGHUP) and no file left behind: no output, no `.part` file or folder.

The classes (issue #13): corrupt inputs, refusals before allocating, disk full and read-only
places (a private tmpfs in a mount namespace), signals, silent surprises, concurrent writers.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgesr.checkpoints import read_checkpoint
from edgesr.export import exporter
from edgesr.export.tflite import convert_keras
from edgesr.model import prepare

TINY = ["--variant", "M1C4", "--scale", "2"]
PROGRESS = ("[edgesr ", "NOTICE:", "warning:")  # lines that accompany a run, not its outcome


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        """stderr without progress, notices and warnings: what the run ended with."""
        return [line for line in self.stderr.splitlines() if line.strip() and not line.startswith(PROGRESS)]


def edgesr(*args: str, cwd: Path, timeout: float = 180, env: dict | None = None) -> Result:
    proc = subprocess.run([sys.executable, "-m", "edgesr", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return Result(proc.returncode, proc.stdout, proc.stderr)


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def assert_one_line(result: Result, code: int, *needles: str) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.code == code, f"exit {result.code}, expected {code}:\n{result.stderr}"
    assert len(result.lines) == 1, f"expected one line, got:\n{result.stderr}"
    line = result.lines[0]
    assert line.startswith("edgesr"), line
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
    return line


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Bad and good inputs, made once: corrupt/truncated models and images, a real x2 model."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "folder").mkdir()
    (root / "corrupt.tflite").write_bytes(b"not a model" * 20)
    (root / "corrupt.onnx").write_bytes(b"\x08\x07garbage" * 20)
    (root / "notes.txt").write_text("hello")
    prepared = prepare("ecbsr", "M1C4", 2)
    exporter.export(prepared, "tflite", "fp32", root / "x2.tflite")
    twin = prepared.family.keras_twin("deploy", prepared.deployable.graphs["deploy"], prepared.config)
    (root / "plain_x2.tflite").write_bytes(convert_keras(twin, "fp32"))  # another tool's file: no metadata
    data = (root / "x2.tflite").read_bytes()
    (root / "truncated.tflite").write_bytes(data[: len(data) // 2])
    photo = (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8)
    Image.fromarray(photo).save(root / "photo.png")
    png = (root / "photo.png").read_bytes()
    (root / "truncated.png").write_bytes(png[: len(png) // 2])
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    Image.fromarray(photo[:6, :5]).save(root / "tiny.png")
    Image.new("1", (40000, 40000)).save(root / "bomb.png")  # 200 KB on disk, 1.6 G pixels once decoded
    for name, members in {"bad_images": ["corrupt.png", "truncated.png", "tiny.png"],
                          "mixed_images": ["photo.png", "truncated.png", "tiny.png"]}.items():
        (root / name).mkdir()
        for member in members:
            shutil.copy(root / member, root / name / member)
    (root / "damaged.json").write_text('{"schema": "edgesr-bench/1", "device": {}, "cases": [{"model": "x"}]}')
    return root


@pytest.fixture
def work(tmp_path) -> Path:
    """An empty folder to run in; whatever is in it afterwards was written by the run."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


# --- exit 2 / exit 1 with one line, nothing written ------------------------------------------------

CASES = [
    # (id, args (F = the inputs folder), exit code, words the one line must contain)
    ("corrupt-tflite-eval", ["eval", *TINY, "--data", "F/mixed_images", "--model-file", "F/corrupt.tflite"], 1,
     ["LiteRT cannot load", "corrupt.tflite"]),
    ("truncated-tflite-upscale", ["upscale", "F/photo.png", "-o", "o.png", *TINY, "--model-file",
                                  "F/truncated.tflite"], 1, ["LiteRT cannot load"]),
    ("corrupt-onnx-eval", ["eval", *TINY, "--data", "F/mixed_images", "--model-file", "F/corrupt.onnx"], 1,
     ["ONNX Runtime cannot load"]),
    ("model-file-says-another-scale", ["eval", "--variant", "M1C4", "--scale", "4", "--data", "F/mixed_images",
                                       "--model-file", "F/x2.tflite"], 2, ["x2.tflite", "scale 2", "--scale 4"]),
    ("model-file-says-another-variant", ["upscale", "F/photo.png", "-o", "o.png", "--variant", "M1C4-RGB",
                                         "--model-file", "F/x2.tflite"], 2, ["x2.tflite", "--variant M1C4-RGB"]),
    ("plain-file-scale-mismatch", ["eval", "--variant", "M1C4", "--scale", "4", "--data", "F/mixed_images",
                                   "--model-file", "F/plain_x2.tflite"], 2, ["upscales x2", "--scale"]),
    ("plain-file-colours-mismatch", ["upscale", "F/photo.png", "-o", "o.png", "--variant", "M1C4-RGB", "--scale", "2",
                                     "--model-file", "F/plain_x2.tflite"], 2, ["plain_x2.tflite", "3-channel"]),
    ("model-file-unknown-type", ["eval", *TINY, "--data", "F/mixed_images", "--model-file", "F/notes.txt"], 2,
     [".txt"]),
    ("eval-only-bad-images", ["eval", *TINY, "--data", "F/bad_images"], 2, ["no usable image", "3 skipped"]),
    ("eval-data-is-a-file", ["eval", *TINY, "--data", "F/photo.png"], 2, ["is a file"]),
    ("upscale-corrupt-image", ["upscale", "F/corrupt.png", "-o", "o.png", *TINY], 2, ["cannot read image"]),
    ("upscale-truncated-image", ["upscale", "F/truncated.png", "-o", "o.png", *TINY], 2, ["truncated"]),
    ("upscale-image-is-a-folder", ["upscale", "F/folder", "-o", "o.png", *TINY], 2, ["is a directory"]),
    ("upscale-output-is-a-folder", ["upscale", "F/photo.png", "-o", "F/folder", *TINY], 2, ["is a directory"]),
    ("weights-is-a-folder", ["export", "--weights", "F/folder"], 2, ["is a directory"]),
    ("weights-is-text", ["export", "--weights", "F/notes.txt"], 2, ["not a PyTorch checkpoint"]),
    ("export-output-is-a-folder", ["export", *TINY, "-o", "F/folder"], 2, ["is a directory"]),
    ("output-under-sys", ["export", *TINY, "-o", "/sys/m.tflite"], 2, ["cannot write into /sys"]),
    ("output-under-proc", ["train", *TINY, "--data", "F/mixed_images", "--iters", "2", "-o", "/proc/t.pt"], 2,
     ["cannot write into /proc"]),
    ("upscale-unknown-output-type", ["upscale", "F/photo.png", "-o", "o.xyz", *TINY], 2, ["o.xyz", ".png"]),
    ("train-batch-0", ["train", *TINY, "--data", "F/mixed_images", "--iters", "2", "--batch", "0", "-o", "t.pt"], 2,
     ["--batch"]),
    ("train-val-folder-missing", ["train", *TINY, "--data", "F/mixed_images", "--iters", "2", "--patch", "8",
                                  "--val", "F/nope", "-o", "t.pt"], 2, ["nope", "not found"]),
    ("verify-sizes-too-large", ["verify", "--model", "smsr", "--sizes", "2048x2048", "--precision", "fp32"], 2,
     ["of memory", "--sizes"]),
    ("train-save-every-0", ["train", *TINY, "--data", "F/mixed_images", "--iters", "2", "--save-every", "0",
                            "-o", "t.pt"], 2, ["--save-every"]),
    ("train-lr-nan", ["train", *TINY, "--data", "F/mixed_images", "--iters", "2", "--lr", "nan", "-o", "t.pt"], 2,
     ["--lr", "nan"]),
    ("train-lr-inf", ["train", *TINY, "--data", "F/mixed_images", "--iters", "2", "--lr", "inf", "-o", "t.pt"], 2,
     ["--lr", "inf"]),
    ("train-output-is-a-folder", ["train", *TINY, "--data", "F/mixed_images", "--iters", "2", "-o", "F/folder"], 2,
     ["is a directory"]),
    ("train-resume-without-a-run", ["train", *TINY, "--data", "F/mixed_images", "--iters", "2", "-o", "t.pt",
                                    "--resume"], 2, ["no run to resume"]),
    ("train-data-is-a-file", ["train", *TINY, "--data", "F/photo.png", "--iters", "2", "-o", "t.pt"], 2,
     ["is a file"]),
    ("bench-compare-damaged", ["bench", "compare", "F/damaged.json", "F/damaged.json"], 2, ["damaged", "runtime"]),
    ("adb-that-fails", ["bench", "--device", "adb", *TINY, "--benchmark-binary", "F/notes.txt", "--adb", "/bin/false"],
     1, ["exit code 1", "adb server"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_ends_in_one_line(case, files, work):
    _, args, code, needles = case
    before_inputs = snapshot(files)
    result = edgesr(*[a.replace("F/", f"{files}/") if a.startswith("F/") else a for a in args], cwd=work)
    assert_one_line(result, code, *needles)
    assert snapshot(work) == set(), snapshot(work)
    assert snapshot(files) == before_inputs


def test_eval_skips_unusable_images_and_says_how_many(files, work):
    result = edgesr("eval", *TINY, "--data", files / "mixed_images", cwd=work)
    assert result.code == 0 and "Traceback" not in result.stderr, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: skipping")]
    assert len(warnings) == 2 and any("truncated" in w for w in warnings) and any("smaller" in w for w in warnings)
    assert "2 of 3 images skipped" in result.stdout and "photo.png" in result.stdout


def test_eval_skips_an_image_too_large_for_memory_before_decoding_it(files, work):
    folder = work.parent / "bomb_folder"
    folder.mkdir()
    shutil.copy(files / "bomb.png", folder)
    shutil.copy(files / "photo.png", folder)
    result = edgesr("eval", *TINY, "--data", folder, cwd=work)
    assert result.code == 0 and "Traceback" not in result.stderr, result.stderr
    assert any(line.startswith("warning: skipping bomb.png: 40000x40000 needs about") and "GiB of memory" in line
               for line in result.stderr.splitlines()), result.stderr
    assert "1 of 2 images skipped" in result.stdout


def test_internal_errors_are_one_line_too(monkeypatch, capsys):
    """The last line of defence: an unexpected exception (a bug) is one line naming it, exit 1."""
    from edgesr import cli
    from edgesr.cli import models

    def broken(args):
        return 1 / 0

    monkeypatch.setattr(models, "run", broken)
    assert cli.main(["models"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [err.strip()] and "Traceback" not in err
    assert "internal error: ZeroDivisionError" in err and "EDGESR_DEBUG=1" in err


# --- refuse before allocating ----------------------------------------------------------------------

@pytest.mark.parametrize("args,what", [
    (["export", "--variant", "M999999C999999"], "parameters"),
    (["export", "--variant", "M64C2048"], "parameters"),
    (["train", "--variant", "M64C2048", "--data", "F/mixed_images", "--iters", "1", "-o", "t.pt"], "parameters"),
    (["upscale", "F/bomb.png", "-o", "o.png", *TINY], "40000x40000"),
    (["bench", *TINY, "--input", "100000x100000", "--runtime", "torch"], "100000x100000"),
], ids=["export-huge", "export-wide", "train-wide", "upscale-bomb", "bench-input"])
def test_too_big_is_refused_before_allocating(args, what, files, work):
    start = time.monotonic()
    result = edgesr(*[a.replace("F/", f"{files}/") if a.startswith("F/") else a for a in args], cwd=work)
    line = assert_one_line(result, 2, what, "of memory", "available")
    assert "GiB" in line or "TiB" in line or "PiB" in line
    assert time.monotonic() - start < 60  # refused, not attempted
    assert snapshot(work) == set()


# --- disk full and read-only places, for real ------------------------------------------------------

def _in_small_fs(args: list[str], size: str, readonly: bool, cwd: Path) -> tuple[Result, list[str]]:
    """Run edgesr with a fresh tmpfs of `size` (read-only if asked) mounted at cwd/small, in a
    private mount namespace; returns the result and what the tmpfs held at the end."""
    mount = cwd / "small"
    mount.mkdir()
    remount = f" && mount -o remount,ro {mount}" if readonly else ""
    cli = " ".join(f"'{a}'" for a in [sys.executable, "-m", "edgesr", *args])
    script = (f"mount -t tmpfs -o size={size} tmpfs {mount}{remount} || exit 99; {cli}; rc=$?; "
              f"echo __LEFT__; ls -A {mount}; exit $rc")
    runner = ["unshare", "-rm", "sh", "-c", script] if os.geteuid() else ["unshare", "-m", "sh", "-c", script]
    proc = subprocess.run(runner, capture_output=True, text=True, cwd=cwd, timeout=180)
    assert proc.returncode != 99, f"cannot mount a tmpfs here: {proc.stderr}"
    out, _, left = proc.stdout.partition("__LEFT__\n")
    mount.rmdir()
    return Result(proc.returncode, out, proc.stderr), left.split()


@pytest.mark.parametrize("args", [
    ["export", *TINY, "-o", "small/m.tflite"],
    ["export", "--model", "classsr", "--variant", "FSRCNN-4-6-8-S4M1", "-o", "small/bundle"],
    ["upscale", "F/photo.png", "-o", "small/up.png", *TINY],
    ["train", *TINY, "--data", "F/mixed_images", "--iters", "3", "--patch", "8", "-o", "small/t.pt"],
], ids=["export", "bundle", "upscale", "train"])
def test_disk_full_is_a_one_line_exit_1_and_leaves_nothing(args, files, work):
    args = [a.replace("F/", f"{files}/") if a.startswith("F/") else a for a in args]
    result, left = _in_small_fs(args, "4k", readonly=False, cwd=work)  # one page: no output fits
    assert_one_line(result, 1, "No space left on device", "free some space")
    assert left == [], left


def test_read_only_place_is_refused_even_for_root(files, work):
    result, left = _in_small_fs(["export", *TINY, "-o", "small/m.tflite"], "1m", readonly=True, cwd=work)
    assert_one_line(result, 2, "cannot write into", "Read-only file system")
    assert left == []


# --- signals ---------------------------------------------------------------------------------------

def _signal_when(args: list[str], cwd: Path, ready, signum: int, timeout: float = 120) -> Result:
    """Start edgesr, send `signum` the moment ready() holds (polled), return how it ended."""
    proc = subprocess.Popen([sys.executable, "-m", "edgesr", *map(str, args)], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before the signal:\n{proc.stderr.read()}"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    return Result(proc.returncode, out, err)


def _part_appears(folder: Path):
    return lambda: any(".part" in p.name for p in folder.iterdir())


@pytest.mark.parametrize("args,signum", [
    (["export", *TINY, "-o", "m.tflite"], signal.SIGTERM),
    (["export", *TINY, "-o", "m.onnx", "--format", "onnx"], signal.SIGHUP),
    (["export", "--model", "classsr", "--variant", "FSRCNN-4-6-8-S4M1", "-o", "bundle"], signal.SIGTERM),
], ids=["export-sigterm", "onnx-sighup", "bundle-sigterm"])
def test_a_signal_mid_export_leaves_nothing(args, signum, work):
    result = _signal_when(args, work, _part_appears(work), signum)
    assert_one_line(result, 128 + signum, f"stopped by {signal.Signals(signum).name}")
    assert snapshot(work) == set()


def test_a_signal_mid_training_leaves_only_a_whole_checkpoint(files, work):
    result = _signal_when(["train", *TINY, "--data", files / "mixed_images", "--iters", "100000", "--patch", "8",
                           "--batch", "2", "--save-every", "1", "-o", "t.pt"], work, _part_appears(work),
                          signal.SIGTERM)
    assert_one_line(result, 143, "stopped by SIGTERM")
    assert snapshot(work) <= {"t.pt"}
    if (work / "t.pt").exists():  # the last save before the signal: complete, resumable
        assert "train_state" in torch.load(work / "t.pt", weights_only=True)
        read_checkpoint(work / "t.pt")


@pytest.mark.parametrize("make", ["mkstemp", "mkdtemp"])
def test_a_signal_as_a_temporary_output_is_created_leaves_nothing(make, tmp_path, monkeypatch):
    """The window between creating an output's temporary file (folder) and noting it for removal:
    a SIGTERM sent from inside mkstemp (mkdtemp) takes effect once the name is noted, and it goes."""
    import tempfile

    from edgesr import interrupts
    from edgesr.atomic import atomic_directory, atomic_output
    from edgesr.errors import Terminated

    real = getattr(tempfile, make)

    def create_then_signal(*args, **kwargs):
        made = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs here, in the window
        return made

    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    interrupts.install()
    monkeypatch.setattr(tempfile, make, create_then_signal)
    output = atomic_output(tmp_path / "out.bin") if make == "mkstemp" else atomic_directory(tmp_path / "out")
    try:
        with pytest.raises(Terminated), output as tmp:
            Path(tmp).touch() if make == "mkstemp" else (Path(tmp) / "f").touch()
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert list(tmp_path.iterdir()) == []


def test_a_signal_mid_host_bench_removes_its_folder_and_workers(work, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    os.environ["TMPDIR"], old = str(scratch), os.environ.get("TMPDIR")
    try:
        logs = lambda: any(p.suffix == ".log" for p in scratch.rglob("*"))  # noqa: E731
        result = _signal_when(["bench", *TINY, "--runtime", "torch", "onnxruntime", "--runs", "100000", "--input",
                               "32x32"], work, logs, signal.SIGTERM)
    finally:
        os.environ.pop("TMPDIR") if old is None else os.environ.__setitem__("TMPDIR", old)
    assert_one_line(result, 143, "stopped by SIGTERM")
    assert not list(scratch.glob("edgesr-*")), list(scratch.iterdir())
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if b"edgesr.bench.worker" in _read(p)]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended meanwhile
        return b""


# --- silent surprises ------------------------------------------------------------------------------

def test_two_exports_to_one_path_cannot_both_succeed(work):
    runs = [subprocess.Popen([sys.executable, "-m", "edgesr", "export", *TINY, "-o", "same.tflite"], cwd=work,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [Result(p.wait(timeout=180), p.stdout.read(), p.stderr.read()) for p in runs]
    assert sorted(r.code for r in results) == [0, 2], [r.stderr for r in results]
    loser = next(r for r in results if r.code == 2)
    assert_one_line(loser, 2, "same.tflite")
    assert snapshot(work) == {"same.tflite"}


def test_nan_loss_names_a_checkpoint_only_if_this_run_saved_one(files, work):
    result = edgesr("train", *TINY, "--data", files / "mixed_images", "--iters", "50", "--lr", "1e30", "--patch", "8",
                    "-o", "t.pt", cwd=work)
    assert_one_line(result, 1, "training loss became", "saved no checkpoint")
    assert snapshot(work) == set()
