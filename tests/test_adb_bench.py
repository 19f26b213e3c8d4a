"""`edgesr bench --device adb` end to end through the REAL adb client and server (Debian `adb`,
private ANDROID_ADB_SERVER_PORT) and the loopback device, plus every fault path."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
from loopback.loopback_device import AdbServer
from loopback.rig import start_phone, unplug_when

from edgesr.cli import main

STANDIN = Path(__file__).resolve().parent / "loopback" / "standin_benchmark_model.py"
TINY = ["--variant", "M1C4", "--scale", "2", "--input", "12x10", "--warmup", "1", "--runs", "3", "--cooldown", "0",
        "--max-repeats", "1"]


@pytest.fixture(scope="module")
def adb_server():
    server = AdbServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def phone(tmp_path, adb_server, monkeypatch):
    """A connected loopback phone; `phone.work` is its /data/local/tmp/edgesr on this host."""
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", adb_server.env["ANDROID_ADB_SERVER_PORT"])
    device = start_phone(tmp_path / "phone", adb_server)
    yield device
    device.stop()
    adb_server.adb("disconnect", device.serial, check=False)


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if not line.startswith("[edgesr")]


def test_bench_through_adb_end_to_end(phone, tmp_path, capsys):
    out_dir = tmp_path / "out"
    argv = ["bench", "--device", "adb", *TINY, "--precision", "fp32", "int8", "--threads", "1", "2",
            "--benchmark-binary", str(STANDIN), "--json", str(out_dir / "r.json"), "--csv", str(out_dir / "r.csv"),
            "--plot", str(out_dir / "r.png"), "--max-repeats", "3", "--cv-target", "5"]
    code, out, err = _run(argv, capsys)
    assert code == 0, (out, err)
    report = json.loads((out_dir / "r.json").read_text())
    device = report["device"]
    assert device["kind"] == "adb" and device["serial"] == phone.serial
    assert device["abi"] == "arm64-v8a" and device["android"] and device["soc"]
    assert len(device["cores"]) == 8 and device["thermal_c"]
    assert [(c["precision"], c["threads"]) for c in report["cases"]] == [("fp32", 1), ("int8", 1), ("fp32", 2),
                                                                          ("int8", 2)]
    for case in report["cases"]:
        assert case["device"] == f"adb:{phone.serial}" and case["delegate"] == "xnnpack"
        # repeated until the means' CV is at most 5% (at least twice) or 3 runs; the runs pooled
        assert 2 <= case["repeats"] <= 3 and case["latency"]["runs"] == 3 * case["repeats"]
        assert case["stable"] == (case["cv"] <= 0.05) and (case["stable"] or case["repeats"] == 3)
        means = case["repeat_means_ms"]
        assert case["cv"] == pytest.approx(float(np.std(means) / np.mean(means)))
        assert case["latency"]["mean_ms"] == pytest.approx(float(np.mean(means)))
        assert case["thermal_before_c"] == case["thermal_after_c"] == 41.0  # the loopback's hottest zone
        assert case["latency"]["median_ms"] is None  # benchmark_model prints none: not invented
        assert case["cores_mask"] == "f0" and case["macs"] > 0 and case["peak_rss_mb"] > 0
    assert "tflite/xnnpack" in out and (out_dir / "r.png").stat().st_size > 0
    # a test rig says so everywhere: the title, the JSON (and the plot's title, made by the same function)
    assert device["test_device"] == "loopback" and device["benchmark_tool"] == "stand-in"
    assert "loopback test device" in report["ran_on"] and "NOT a phone" in report["ran_on"]
    assert out.splitlines()[0].startswith(f"bench on {report['ran_on']}")
    left = sorted(p.name for p in phone.work.iterdir())
    assert len(left) == 1 and left[0].startswith("benchmark_model-")  # models and script cleaned up
    cached = phone.work / left[0]
    stamp = cached.stat().st_mtime_ns
    code, out, err = _run(["bench", "--device", "adb", *TINY, "--benchmark-binary", str(STANDIN), "--keep"], capsys)
    assert code == 0, err
    assert cached.stat().st_mtime_ns == stamp  # cached by checksum: not pushed again
    assert any(p.suffix == ".tflite" for p in phone.work.iterdir())  # --keep


STANDIN_RUNNER = Path(__file__).resolve().parent / "loopback" / "standin_executor_runner.py"


def test_executorch_bench_through_adb(phone, tmp_path, capsys):
    """--runtime executorch: the verified .pte files and executor_runner pushed through the real adb
    server, each execution's time parsed (so a median exists), the stand-in named as such."""
    report_path = tmp_path / "r.json"
    code, out, err = _run(["bench", "--device", "adb", *TINY, "--runtime", "executorch", "--precision", "fp32",
                           "int8", "--threads", "1", "2", "--benchmark-binary", str(STANDIN_RUNNER), "--json",
                           str(report_path)], capsys)
    assert code == 0, (out, err)
    report = json.loads(report_path.read_text())
    assert report["device"]["benchmark_tool"] == "stand-in" and "NOT a phone" in report["ran_on"]
    assert "the stand-in executor_runner (ExecuTorch on the host CPU)" in report["ran_on"]
    assert [(c["runtime"], c["precision"], c["threads"]) for c in report["cases"]] == [
        ("executorch", "fp32", 1), ("executorch", "int8", 1), ("executorch", "fp32", 2), ("executorch", "int8", 2)]
    for case in report["cases"]:
        latency = case["latency"]
        assert latency["runs"] == 3 and latency["min_ms"] <= latency["median_ms"] <= latency["max_ms"]
        assert case["input"] == [1, 1, 12, 10] and case["init_ms"] > 0 and case["delegate"] == "xnnpack"
    assert "executorch/xnnpack" in out and "each timed execution" in out
    left = sorted(p.name for p in phone.work.iterdir())
    assert len(left) == 1 and left[0].startswith("executor_runner-")  # .pte files and script cleaned up


def test_executorch_takes_only_its_own_delegate_and_pte_files(phone, tmp_path, capsys):
    report = tmp_path / "r.json"
    base = ["bench", "--device", "adb", *TINY, "--runtime", "executorch", "--benchmark-binary", str(STANDIN_RUNNER),
            "--json", str(report)]
    code, _, err = _run([*base, "--delegate", "gpu"], capsys)
    _assert_one_line_failure(code, err, 2, "executorch runs pte files with their own XNNPACK delegate", report)
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"TFL3" * 10)
    code, _, err = _run([*base, "--model-file", str(tflite)], capsys)
    _assert_one_line_failure(code, err, 2, "executor_runner runs .pte files", report)
    code, _, err = _run([*base, "--benchmark-arg=--no_such_flag=1"], capsys)
    _assert_one_line_failure(code, err, 1, "unknown command line flag 'no_such_flag'", report)


def _assert_one_line_failure(code, err, expected_code, message, report: Path):
    assert code == expected_code, err
    errors = [line for line in err if not line.startswith("NOTICE")]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in "\n".join(err)
    assert not report.exists()


def test_corrupt_tflite_and_too_large_input_fail_before_anything_runs(phone, tmp_path, capsys):
    report = tmp_path / "r.json"
    corrupt = tmp_path / "m.tflite"
    corrupt.write_bytes(b"garbage" * 30)
    code, _, err = _run(["bench", "--device", "adb", *TINY, "--benchmark-binary", str(STANDIN), "--tflite",
                         str(corrupt), "--json", str(report)], capsys)
    _assert_one_line_failure(code, err, 1, "LiteRT cannot load", report)
    argv = ["bench", "--device", "adb", *TINY, "--benchmark-binary", str(STANDIN), "--json", str(report)]
    argv[argv.index("12x10")] = "60000x60000"
    code, _, err = _run(argv, capsys)
    _assert_one_line_failure(code, err, 2, "of its memory is available", report)
    assert not phone.work.exists() or not any(p.suffix == ".tflite" for p in phone.work.iterdir())


def test_unknown_flag_is_an_error(phone, tmp_path, capsys):
    report = tmp_path / "r.json"
    code, _, err = _run(["bench", "--device", "adb", *TINY, "--benchmark-binary", str(STANDIN),
                         "--benchmark-arg=--no_such_flag=1", "--json", str(report)], capsys)
    _assert_one_line_failure(code, err, 1, "did not accept the flags --no_such_flag=1", report)


def test_non_zero_exit_is_an_error(phone, tmp_path, capsys):
    report = tmp_path / "r.json"
    code, _, err = _run(["bench", "--device", "adb", *TINY, "--benchmark-binary", str(STANDIN), "--delegate", "gpu",
                         "--json", str(report)], capsys)
    _assert_one_line_failure(code, err, 1, "exited with code 1", report)
    assert not any(p.suffix == ".tflite" for p in phone.work.iterdir())


def test_missing_binary_on_host_and_unrunnable_binary_on_device(phone, tmp_path, capsys):
    report = tmp_path / "r.json"
    code, _, err = _run(["bench", "--device", "adb", *TINY, "--benchmark-binary", str(tmp_path / "nope"),
                         "--json", str(report)], capsys)
    _assert_one_line_failure(code, err, 2, "benchmark binary", report)
    garbage = tmp_path / "benchmark_model"
    garbage.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(200))  # an arm64-looking file the device cannot exec
    code, _, err = _run(["bench", "--device", "adb", *TINY, "--benchmark-binary", str(garbage),
                         "--json", str(report)], capsys)
    _assert_one_line_failure(code, err, 1, "benchmark_model exited with code", report)


def test_failed_push_is_an_error(phone, tmp_path, capsys):
    phone.fail_pushes("No space left on device")
    report = tmp_path / "r.json"
    code, _, err = _run(["bench", "--device", "adb", *TINY, "--benchmark-binary", str(STANDIN),
                         "--json", str(report)], capsys)
    _assert_one_line_failure(code, err, 1, "No space left on device", report)


def test_device_disappearing_mid_run(phone, tmp_path, capsys):
    slow = tmp_path / "slow_benchmark_model"
    slow.write_text("#!/bin/sh\necho 'INFO: STARTING!'\nsleep 60\n")
    report = tmp_path / "r.json"

    thread = unplug_when(phone, lambda: any(p.name.startswith("benchmark_model-") for p in phone.work.glob("*"))
                         and (phone.work / "run_benchmark.sh").exists(), 1.5)
    start = time.time()
    code, _, err = _run(["bench", "--device", "adb", *TINY, "--benchmark-binary", str(slow),
                         "--json", str(report)], capsys)
    thread.join(5)
    assert time.time() - start < 45
    _assert_one_line_failure(code, err, 1, f"device {phone.serial} disconnected", report)


def test_device_selection_errors(tmp_path, adb_server, monkeypatch, capsys):
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", adb_server.env["ANDROID_ADB_SERVER_PORT"])
    base = ["bench", "--device", "adb", *TINY, "--benchmark-binary", str(STANDIN)]
    code, _, err = _run(base, capsys)
    _assert_one_line_failure(code, err, 2, "no adb device connected", tmp_path / "none")
    first = start_phone(tmp_path / "a", adb_server)
    second = start_phone(tmp_path / "b", adb_server)
    try:
        code, _, err = _run(base, capsys)
        _assert_one_line_failure(code, err, 2, "pick with --serial", tmp_path / "none")
        code, _, err = _run(base + ["--serial", "127.0.0.1:1"], capsys)
        _assert_one_line_failure(code, err, 2, "is not connected", tmp_path / "none")
    finally:
        for device in (first, second):
            device.stop()
            adb_server.adb("disconnect", device.serial, check=False)


@pytest.mark.parametrize("mode,message", [("unauthorized", "RSA key prompt"), ("offline", "is offline")])
def test_unusable_device_states(mode, message, tmp_path, adb_server, monkeypatch, capsys):
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", adb_server.env["ANDROID_ADB_SERVER_PORT"])
    device = start_phone(tmp_path / mode, adb_server, mode=mode)
    try:
        code, _, err = _run(["bench", "--device", "adb", *TINY, "--benchmark-binary", str(STANDIN),
                             "--serial", device.serial], capsys)
        _assert_one_line_failure(code, err, 2, message, tmp_path / "none")
    finally:
        device.stop()
        adb_server.adb("disconnect", device.serial, check=False)
