"""Bad inputs to the `edgesr` CLI: each must give exit code 2, one line on stderr naming the
problem, no traceback, and no output file (or hidden `.name.*.part*` temp file) left behind.

Every model here is tiny (ECBSR M1C4 x2) so the whole file runs in well under a minute.
"""

from __future__ import annotations

import os
import pathlib
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgesr.cli import main
from edgesr.families.ecbsr.model import ECBSR, ECBSRConfig

TINY = ["--variant", "M1C4", "--scale", "2"]
OLD_BYTES = b"do not overwrite me\n"


# ----------------------------------------------------------------------------- helpers

def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run `edgesr <argv>` in-process; argparse errors (SystemExit) become an exit code."""
    capsys.readouterr()  # drop anything captured before this call
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> set[str]:
    """Every path under `folder`, hidden files and folders included."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def part_files(folder: Path) -> list[Path]:
    """Leftover temporary files from atomic_output (`.name.XXXX.part.ext`)."""
    return [p for p in folder.rglob(".*") if ".part" in p.name]


def assert_user_error(code: int, err: str, *needles: str, prefix: str = "edgesr: error: ") -> str:
    """Exit 2, exactly one non-empty stderr line starting with `prefix`, containing every needle."""
    assert code == 2, f"exit code {code}, stderr:\n{err}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.startswith(prefix), line
    assert len(line) > len(prefix) + 5, line
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
    return line


def assert_argparse_error(code: int, err: str, sub: str, *needles: str) -> str:
    line = assert_user_error(code, err, *needles, prefix=f"edgesr {sub}: error: ")
    assert f"(see 'edgesr {sub} --help')" in line, line
    return line


def assert_nothing_written(folder: Path, before: set[str]) -> None:
    after = snapshot(folder)
    assert after == before, f"new files left behind: {sorted(after - before)}"
    assert not part_files(folder), part_files(folder)


def tiny_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return ECBSR(ECBSRConfig(1, 4, 2)).state_dict()


def is_tflite(path: Path) -> bool:
    data = path.read_bytes()
    return len(data) > 8 and data[4:8] == b"TFL3"


class _TouchOnUnpickle:
    """Unpickling this runs Path.touch(marker): a stand-in for arbitrary code execution."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture
def work(tmp_path: Path, monkeypatch) -> Path:
    """An empty current folder, so nothing is ever written into the repository."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tiny_ckpt(work: Path) -> Path:
    """A valid plain state_dict of ECBSR M1C4 x2 (training layout)."""
    path = work / "m1c4_x2.pt"
    torch.save(tiny_state_dict(), path)
    return path


# ----------------------------------------------------------------------------- 1-3: model, variant, format

@pytest.mark.parametrize("command", ["export", "verify"])
def test_unknown_model_lists_known_models(work, capsys, command):
    before = snapshot(work)
    code, out, err = run_cli([command, "--model", "foo", *TINY], capsys)
    assert_user_error(code, err, "unknown model", "'foo'", "ecbsr")
    assert out == ""
    assert_nothing_written(work, before)


def test_models_command_with_unknown_model(work, capsys):
    code, _, err = run_cli(["models", "--model", "foo"], capsys)
    assert_user_error(code, err, "unknown model", "ecbsr")


def test_unknown_variant(work, capsys):
    before = snapshot(work)
    code, _, err = run_cli(["export", "--variant", "X9", "--scale", "2"], capsys)
    assert_user_error(code, err, "unknown ecbsr variant", "'X9'", "M4C16")
    assert_nothing_written(work, before)


@pytest.mark.parametrize("extra, needles", [
    (["--format", "coreml"], ["unknown format", "'coreml'", "onnx", "tflite"]),
    (["--precision", "fp8"], ["unknown precision", "'fp8'", "fp32", "fp16", "int8"]),
    (["--format", "onnx", "--precision", "int8"], ["onnx", "fp32 only", "int8"]),
], ids=["format-coreml", "precision-fp8", "onnx-int8"])
def test_bad_format_or_precision(work, capsys, extra, needles):
    before = snapshot(work)
    code, _, err = run_cli(["export", *TINY, *extra], capsys)
    assert_user_error(code, err, *needles)
    assert_nothing_written(work, before)


# ----------------------------------------------------------------------------- 4: scale

def test_unsupported_scale(work, capsys):
    before = snapshot(work)
    code, _, err = run_cli(["export", "--variant", "M1C4", "--scale", "5"], capsys)
    assert_user_error(code, err, "scale 5", "2, 3, 4")
    assert_nothing_written(work, before)


def test_non_integer_scale_is_argparse_error(work, capsys):
    before = snapshot(work)
    code, _, err = run_cli(["export", "--variant", "M1C4", "--scale", "abc"], capsys)
    assert_argparse_error(code, err, "export", "--scale", "'abc'")
    assert_nothing_written(work, before)


def test_zero_scale_is_refused(work, capsys):
    before = snapshot(work)
    code, _, err = run_cli(["export", "--variant", "M1C4", "--scale", "0", "--format", "onnx",
                            "-o", "z.onnx"], capsys)
    assert_user_error(code, err, "scale 0")
    assert_nothing_written(work, before)


# ----------------------------------------------------------------------------- 5: unreadable checkpoints

def test_checkpoint_not_found(work, capsys):
    before = snapshot(work)
    code, _, err = run_cli(["export", *TINY, "--weights", "missing.pt", "-o", "m.tflite"], capsys)
    assert_user_error(code, err, "missing.pt", "not found", "weights")
    assert_nothing_written(work, before)


def test_checkpoint_is_a_directory(work, capsys):
    (work / "ckpt_dir.pt").mkdir()
    before = snapshot(work)
    code, _, err = run_cli(["export", *TINY, "--weights", "ckpt_dir.pt", "-o", "m.tflite"], capsys)
    assert_user_error(code, err, "ckpt_dir.pt", "is a directory")
    assert_nothing_written(work, before)


def test_checkpoint_random_bytes(work, capsys):
    (work / "garbage.pt").write_bytes(random.Random(0).randbytes(4096))
    before = snapshot(work)
    code, _, err = run_cli(["export", *TINY, "--weights", "garbage.pt", "-o", "m.tflite"], capsys)
    assert_user_error(code, err, "cannot read checkpoint", "garbage.pt", "weights-only")
    assert_nothing_written(work, before)


def test_checkpoint_that_is_not_a_state_dict(work, capsys):
    torch.save([torch.zeros(3)], work / "list.pt")
    before = snapshot(work)
    code, _, err = run_cli(["export", *TINY, "--weights", "list.pt", "-o", "m.tflite"], capsys)
    assert_user_error(code, err, "list.pt", "not a state_dict")
    assert_nothing_written(work, before)


def test_checkpoint_of_another_network(work, capsys):
    torch.save({"encoder.weight": torch.zeros(4, 4)}, work / "other.pt")
    before = snapshot(work)
    code, _, err = run_cli(["export", *TINY, "--weights", "other.pt", "-o", "m.tflite"], capsys)
    assert_user_error(code, err, "not an ECBSR state_dict")
    assert_nothing_written(work, before)


def test_malicious_pickle_is_refused_and_not_executed(work, capsys):
    # Prove the payload is live: an unsafe load really runs it.
    probe_marker = work.parent / f"{work.name}_probe_marker"
    probe = work.parent / f"{work.name}_probe.pt"
    torch.save({"params": _TouchOnUnpickle(probe_marker)}, probe)
    torch.load(probe, weights_only=False)
    assert probe_marker.exists(), "test payload does not execute on an unsafe load"

    marker = work.parent / f"{work.name}_pwned_marker"
    torch.save({"params": _TouchOnUnpickle(marker)}, work / "evil.pt")
    before = snapshot(work)
    code, _, err = run_cli(["export", *TINY, "--weights", "evil.pt", "-o", "m.tflite"], capsys)
    assert_user_error(code, err, "cannot read checkpoint", "evil.pt", "weights-only")
    assert not marker.exists(), "loading the checkpoint executed code from the pickle"
    assert_nothing_written(work, before)


def test_malicious_pickle_via_os_system_not_executed(work, capsys):
    class _System:
        def __reduce__(self):
            return (os.system, (f"touch {work / 'pwned_by_system'}",))

    torch.save(_System(), work / "evil_system.pt")
    before = snapshot(work)
    code, _, err = run_cli(["verify", *TINY, "--weights", "evil_system.pt"], capsys)
    assert_user_error(code, err, "cannot read checkpoint", "evil_system.pt")
    assert not (work / "pwned_by_system").exists()
    assert_nothing_written(work, before)


@pytest.mark.parametrize("kind", ["random-bytes", "pickle-payload"])
def test_unreadable_checkpoint_message_is_clean(work, capsys, kind):
    path = work / "bad.pt"
    if kind == "random-bytes":
        path.write_bytes(random.Random(0).randbytes(4096))
    else:
        torch.save({"params": _TouchOnUnpickle(work.parent / f"{work.name}_m")}, path)
    code, _, err = run_cli(["export", *TINY, "--weights", str(path), "-o", "m.tflite"], capsys)
    line = assert_user_error(code, err, "cannot read checkpoint")
    assert "\x1b" not in line, repr(line)
    assert "set to `False`" not in line and "weights_only` set" not in line, line


# ----------------------------------------------------------------------------- 6: mismatched checkpoints

def test_state_dict_missing_and_unexpected_keys(work, capsys):
    state = tiny_state_dict()
    missing = "backbone.1.conv1x1_sbx.bias"
    assert missing in state
    del state[missing]
    state["backbone.1.extra_head.weight"] = torch.zeros(4)
    torch.save(state, work / "mismatch.pt")
    before = snapshot(work)
    code, _, err = run_cli(["export", *TINY, "--weights", "mismatch.pt", "-o", "m.tflite"], capsys)
    assert_user_error(code, err, "does not match", "missing keys", missing,
                      "unexpected keys", "backbone.1.extra_head.weight")
    assert_nothing_written(work, before)


def test_state_dict_shape_mismatch(work, capsys):
    state = tiny_state_dict()
    state["backbone.1.conv1x1_3x3.k0"] = torch.zeros(3, 4, 1, 1)
    torch.save(state, work / "shapes.pt")
    code, _, err = run_cli(["export", *TINY, "--weights", "shapes.pt", "-o", "m.tflite"], capsys)
    assert_user_error(code, err, "shape mismatch", "backbone.1.conv1x1_3x3.k0")
    assert not (work / "m.tflite").exists()


def test_checkpoint_scale_differs_from_flag(work, capsys, tiny_ckpt):
    before = snapshot(work)
    code, _, err = run_cli(["export", "--variant", "M1C4", "--scale", "3", "--weights", str(tiny_ckpt),
                            "-o", "m.tflite"], capsys)
    assert_user_error(code, err, "x2", "scale 3", str(tiny_ckpt))
    assert_nothing_written(work, before)


def test_checkpoint_variant_differs_from_flag(work, capsys, tiny_ckpt):
    before = snapshot(work)
    code, _, err = run_cli(["export", "--variant", "M2C4", "--scale", "2", "--weights", str(tiny_ckpt),
                            "-o", "m.tflite"], capsys)
    assert_user_error(code, err, "M1C4", "variant M2C4")
    assert_nothing_written(work, before)


# ----------------------------------------------------------------------------- 7-9: output paths

def test_output_parent_is_a_file(work, capsys, tiny_ckpt):
    (work / "somefile").write_bytes(b"x")
    before = snapshot(work)
    code, _, err = run_cli(["export", *TINY, "--weights", str(tiny_ckpt), "-o", "somefile/out.tflite"], capsys)
    assert_user_error(code, err, "somefile", "cannot create output folder")
    assert (work / "somefile").read_bytes() == b"x"
    assert_nothing_written(work, before)


def test_output_is_an_existing_directory(work, capsys, tiny_ckpt):
    (work / "existing.tflite").mkdir()
    before = snapshot(work)
    code, _, err = run_cli(["export", *TINY, "--weights", str(tiny_ckpt), "-o", "existing.tflite"], capsys)
    assert_user_error(code, err, "existing.tflite", "is a directory")
    assert_nothing_written(work, before)


def test_verify_json_is_an_existing_directory(work, capsys):
    (work / "results").mkdir()
    before = snapshot(work)
    code, _, err = run_cli(["verify", *TINY, "--json", "results"], capsys)
    assert_user_error(code, err, "results", "is a directory")
    assert_nothing_written(work, before)


def test_wrong_output_suffix(work, capsys, tiny_ckpt):
    before = snapshot(work)
    code, _, err = run_cli(["export", *TINY, "--weights", str(tiny_ckpt), "--format", "onnx",
                            "-o", "model.tflite"], capsys)
    assert_user_error(code, err, "model.tflite", ".onnx")
    assert_nothing_written(work, before)


def test_existing_output_needs_force_then_force_overwrites(work, capsys, tiny_ckpt):
    target = work / "model.tflite"
    target.write_bytes(OLD_BYTES)
    before = snapshot(work)
    code, out, err = run_cli(["export", *TINY, "--weights", str(tiny_ckpt), "-o", "model.tflite"], capsys)
    assert_user_error(code, err, "model.tflite", "already exists", "--force")
    assert target.read_bytes() == OLD_BYTES
    assert_nothing_written(work, before)

    code, out, err = run_cli(["export", *TINY, "--weights", str(tiny_ckpt), "-o", "model.tflite",
                              "--force"], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    assert target.read_bytes() != OLD_BYTES
    assert is_tflite(target)
    assert "PASS" in out
    assert snapshot(work) == before  # overwritten in place, no temp files left
    assert not part_files(work)


@pytest.mark.parametrize("case", ["exists", "suffix", "directory"])
def test_output_error_without_weights_is_one_line(work, capsys, case):
    if case == "exists":
        (work / "a.tflite").write_bytes(OLD_BYTES)
        argv, needle = ["-o", "a.tflite"], "--force"
    elif case == "suffix":
        argv, needle = ["--format", "onnx", "-o", "a.tflite"], ".onnx"
    else:
        (work / "d.tflite").mkdir()
        argv, needle = ["-o", "d.tflite"], "directory"
    before = snapshot(work)
    code, _, err = run_cli(["export", *TINY, *argv], capsys)
    assert_nothing_written(work, before)
    assert_user_error(code, err, needle)


# ----------------------------------------------------------------------------- 10: verify sizes

@pytest.mark.parametrize("sizes, needles", [
    ("0x5", ["--sizes", "0x5", "between 1 and 2048"]),
    ("abc", ["--sizes", "'abc'", "HxW"]),
    ("48x48,9999x2", ["--sizes", "9999x2"]),
], ids=["zero-side", "not-HxW", "too-big"])
def test_verify_bad_sizes(work, capsys, sizes, needles):
    before = snapshot(work)
    code, out, err = run_cli(["verify", *TINY, "--sizes", sizes], capsys)
    assert_argparse_error(code, err, "verify", *needles)
    assert out == ""
    assert_nothing_written(work, before)


def test_verify_bad_precision_choice(work, capsys):
    code, _, err = run_cli(["verify", *TINY, "--precision", "fp8"], capsys)
    assert_argparse_error(code, err, "verify", "--precision", "fp8")


# ----------------------------------------------------------------------------- positive: BasicSR wrapper

def test_basicsr_wrapped_module_prefixed_checkpoint_exports(work, capsys):
    state = {f"module.{k}": v for k, v in tiny_state_dict(seed=3).items()}
    torch.save({"params_ema": state, "params": {}}, work / "basicsr.pth")
    code, out, err = run_cli(["export", *TINY, "--weights", "basicsr.pth", "-o", "sr.tflite"], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    assert "NOTICE" not in err  # real weights: no random-init notice
    assert "ecbsr M1C4 x2" in out and "0..1" in out  # BasicSR checkpoints default to inputs in 0..1
    parity = [line for line in out.splitlines() if "parity" in line]
    assert len(parity) == 1 and parity[0].rstrip().endswith("PASS"), out
    assert is_tflite(work / "sr.tflite")
    assert not part_files(work)


# ----------------------------------------------------------------------------- 11: installed console script

def _console_script() -> str:
    beside = Path(sys.executable).parent / "edgesr"
    found = str(beside) if beside.is_file() else shutil.which("edgesr")
    if not found:
        pytest.fail("edgesr console script is not installed: run scripts/setup.sh")
    return found


@pytest.mark.parametrize("argv, needle", [
    (["export", "--model", "nope"], "unknown model 'nope'"),
    (["export", "--variant", "M1C4", "--scale", "abc"], "invalid int value"),
], ids=["user-error", "argparse-error"])
def test_console_script_one_line_exit_2(work, argv, needle):
    proc = subprocess.run([_console_script(), *argv], capture_output=True, text=True, timeout=120, cwd=work)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), proc.stderr
    assert lines[0].startswith("edgesr") and ": error: " in lines[0]
    assert needle in lines[0]
    assert proc.stdout == ""
    assert snapshot(work) == set()


def test_console_script_refuses_pickle_payload(work):
    marker = work.parent / f"{work.name}_script_marker"
    torch.save({"params_ema": _TouchOnUnpickle(marker)}, work / "evil.pt")
    proc = subprocess.run([_console_script(), "export", *TINY, "--weights", "evil.pt", "-o", "m.tflite"],
                          capture_output=True, text=True, timeout=120, cwd=work)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgesr: error: cannot read checkpoint"), proc.stderr
    assert not marker.exists()
    assert snapshot(work) == {"evil.pt"}


# ----------------------------------------------------------------------------- library wording

def test_library_errors_name_options_the_cli_words_as_flags(work, capsys, tiny_ckpt):
    """The API raises with «option» marks (str: 'force'); the CLI prints them as flags (--force)."""
    from edgesr.api import load
    from edgesr.errors import UserError

    out = work / "m.onnx"
    out.write_bytes(OLD_BYTES)
    with pytest.raises(UserError) as raised:
        load("ecbsr", "M1C4", 2, weights=tiny_ckpt).export("onnx", out=out)
    assert "pass 'force' to overwrite it" in str(raised.value) and "--" not in str(raised.value)
    code, _, err = run_cli(["export", "--model", "ecbsr", *TINY, "--weights", str(tiny_ckpt), "--format", "onnx",
                            "-o", str(out)], capsys)
    assert code == 2 and "pass --force to overwrite it" in err and "«" not in err
    assert str(UserError("pass «model_file» and «force»")) == "pass 'model_file' and 'force'"


def _messages_with_flags(path: Path) -> list[str]:
    """String literals in the arguments of error constructors that spell a CLI flag."""
    import ast
    import re

    flag = re.compile(r"(?<![\w-])--[a-z]")
    errors = {"UserError", "ToolError", "ParityError", "EdgeSRError", "_bad", "check_fits"}
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        name = getattr(getattr(node, "func", None), "id", None) or getattr(getattr(node, "func", None), "attr", None)
        if isinstance(node, ast.Call) and name in errors:
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                for leaf in ast.walk(arg):
                    if isinstance(leaf, ast.Constant) and isinstance(leaf.value, str) and flag.search(leaf.value):
                        found.append(f"{path.name}:{leaf.lineno}: {leaf.value}")
    return found


def test_no_library_error_spells_a_cli_flag(tmp_path):
    package = Path(__file__).resolve().parent.parent / "edgesr"
    library = [p for p in package.rglob("*.py") if "cli" not in p.relative_to(package).parts]
    assert len(library) > 40 and [m for p in library for m in _messages_with_flags(p)] == []
    probe = tmp_path / "probe.py"  # the scan finds what it forbids
    probe.write_text('raise UserError(f"{x} exists: pass --force")\nraise ToolError("ok «force»")\n')
    assert _messages_with_flags(probe) == ["probe.py:1:  exists: pass --force"]


@pytest.mark.parametrize("blocked, fmt, extra", [("onnx", "onnx", "onnx"), ("tensorflow", "tflite", "tflite")])
def test_a_missing_extra_names_its_install_command(work, blocked, fmt, extra):
    """Without an extra's package (as after a plain `pip install .`), the command says which extra."""
    script = (f"import sys; sys.modules[{blocked!r}] = None\n"  # import now raises ModuleNotFoundError
              "from edgesr.cli import main\n"
              f"sys.exit(main(['export', '--model', 'ecbsr', *{TINY!r}, '--format', {fmt!r}, '-o', 'm.{fmt}']))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and f"pip install 'edgesr[{extra}]'" in lines[-1], done.stderr
    assert "Traceback" not in done.stderr and not (work / f"m.{fmt}").exists()
