"""Host benchmark: statistics, CPU peak, case planning, reports, and one tiny end-to-end run."""

import json

import numpy as np
import pytest

from edgesr.bench import report as reports
from edgesr.bench.cpu import detect_cpu
from edgesr.bench.host import model_target, parse_shape, plan_cases
from edgesr.bench.stats import percentile, summarize
from edgesr.cli import main
from edgesr.errors import UserError

AVX512_CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor @ 2.80GHz
cpu MHz\t\t: 2793.438
flags\t\t: fpu sse sse2 fma avx avx2 avx512f avx512bw
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes crc32 atomics fphp asimdhp
"""


def test_statistics_match_numpy():
    values = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 7.5]
    stats = summarize(values)
    assert stats.runs == 7 and stats.min_ms == 1.0 and stats.max_ms == 10.0
    assert stats.median_ms == pytest.approx(np.median(values))
    assert stats.p90_ms == pytest.approx(np.percentile(values, 90))
    assert stats.mean_ms == pytest.approx(np.mean(values))
    assert stats.std_ms == pytest.approx(np.std(values, ddof=1))
    assert summarize([2.0]).std_ms == 0.0
    assert percentile([1.0, 2.0], 50) == 1.5


def test_cpu_facts_from_cpuinfo():
    cpu = detect_cpu(AVX512_CPUINFO)
    assert (cpu.simd, cpu.fp32_lanes, cpu.fma, cpu.ghz) == ("AVX-512", 16, True, 2.8)
    arm = detect_cpu(ARM_CPUINFO)
    assert arm.simd == "NEON" and arm.fp32_lanes == 4


def test_parse_shape():
    assert parse_shape("360x640", 1) == (1, 1, 360, 640)
    assert parse_shape("2x3x8x9", 3) == (2, 3, 8, 9)
    for bad in ("0x5", "-1x4", "axb", "1x2x3"):
        with pytest.raises(UserError):
            parse_shape(bad, 1)
    with pytest.raises(UserError, match="3 channels but the model takes 1"):
        parse_shape("1x3x360x640", 1)


def test_plan_cases_and_refusals(tiny_y):
    target = model_target(tiny_y)
    cases = plan_cases(target, ["torch", "tflite"], ["fp32", "int8"], ["8x8", "9x7"], [1, 2])
    assert len(cases) == 2 * 2 * (1 + 2)
    assert all(c.precision == "fp32" for c in cases if c.runtime == "torch")
    with pytest.raises(UserError, match="unknown runtime"):
        plan_cases(target, ["tensorrt"], ["fp32"], ["8x8"], [1])
    with pytest.raises(UserError, match="onnxruntime runs fp32 only"):
        plan_cases(target, ["onnxruntime"], ["int8"], ["8x8"], [1])
    with pytest.raises(UserError, match="threads"):
        plan_cases(target, ["torch"], ["fp32"], ["8x8"], [0])
    with pytest.raises(UserError, match="GiB"):
        plan_cases(target, ["torch"], ["fp32"], ["200000x200000"], [1])


def _case(runtime: str, median: float) -> dict:
    return {"device": "host", "model": "ecbsr", "variant": "M1C4", "scale": 2, "runtime": runtime,
            "precision": "fp32", "input": [1, 1, 8, 8], "threads": 1,
            "latency": summarize([median, median]).to_dict()}


def test_compare_prints_ratios_and_rejects_unrelated_reports(tmp_path):
    a = reports.new_report({"kind": "host"}, {})
    b = reports.new_report({"kind": "host"}, {})
    a["cases"] = [_case("torch", 4.0), _case("tflite", 2.0)]
    b["cases"] = [_case("torch", 2.0), _case("tflite", 3.0)]
    text = reports.compare(a, b)
    assert "0.500" in text and "1.500" in text
    c = reports.new_report({"kind": "host"}, {})
    c["cases"] = [{**_case("torch", 1.0), "threads": 4}]
    with pytest.raises(UserError, match="no case in common"):
        reports.compare(a, c)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(UserError, match="not an edgesr benchmark report"):
        reports.load_report(tmp_path / "x.json")


def test_csv_has_one_row_per_case():
    r = reports.new_report({"kind": "host"}, {})
    r["cases"] = [_case("torch", 4.0), _case("tflite", 2.0)]
    rows = reports.to_csv(r).strip().splitlines()
    assert rows[0].startswith("model,variant,scale") and len(rows) == 3 and "1x1x8x8" in rows[1]


def test_bench_end_to_end_writes_schema(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ceiling_cache = tmp_path / "cache" / "edgesr" / "ceiling.json"
    code = main(["bench", "--variant", "M1C4", "--scale", "2", "--runtime", "torch-train", "torch",
                 "onnxruntime", "tflite", "executorch", "--precision", "fp32", "int8", "--input", "12x10",
                 "--runs", "3", "--warmup", "1", "--rounds", "2", "--json", "r.json", "--csv", "r.csv", "--plot",
                 "r.png"])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["schema"] == reports.SCHEMA
    assert {"cpu", "ceiling"} <= set(report["device"]) and report["versions"]["torch"]
    measured = report["device"]["ceiling"]["by_threads"]["1"]
    assert measured["fp32_gflops"] > 1 and report["settings"]["input_data"] == "photo"
    assert json.loads(ceiling_cache.read_text())  # measured once, cached for the next run
    assert [(c["runtime"], c["precision"]) for c in report["cases"]] == [
        ("torch-train", "fp32"), ("torch", "fp32"), ("onnxruntime", "fp32"), ("tflite", "fp32"), ("tflite", "int8"),
        ("executorch", "fp32"), ("executorch", "int8")]
    for case in report["cases"]:
        assert case["latency"]["runs"] == 3 and case["latency"]["min_ms"] > 0
        assert case["threads_applied"] == 1 and case["peak_rss_mb"] > 0
        assert case["macs"] > 0
        top = measured["int8_gops"] if case["precision"] == "int8" else measured["fp32_gflops"]
        assert case["ceiling_gops"] == top
        if case["precision"] == "fp32":  # no tiny model outruns a large SGEMM
            assert 0 < case["ceiling_fraction"] < 1
        else:  # a CPU without fast int8 GEMM (or none in this torch build): slow or unmeasured ceiling
            assert top is None or case["ceiling_fraction"] > 0
        if case["runtime"] == "tflite":  # the default int8 form (ECBSR: blocked) runs all in XNNPACK too
            assert case["xnnpack"]["partitions"] == 1 and case["xnnpack"]["outside"] == {}
        if case["runtime"] == "executorch":  # threads_applied above: its threadpool's reported size
            assert case["xnnpack"]["partitions"] >= 1 and case["xnnpack"]["outside"] == {}
    train, deploy = report["cases"][0], report["cases"][1]
    assert train["macs"] > deploy["macs"]  # the training graph does the un-folded work
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((tmp_path / "r.csv").read_text().strip().splitlines()) == 8
    assert "torch-train" in captured.out and "%ceil" in captured.out and "photo input" in captured.out


@pytest.mark.parametrize("argv,message", [
    (["bench", "--runtime", "tensorrt"], "unknown runtime"),
    (["bench", "--threads", "0", "--runtime", "torch"], "threads"),
    (["bench", "--input", "0x5", "--runtime", "torch"], "zero or negative"),
    (["bench", "--runtime", "onnxruntime", "--precision", "fp16"], "fp32 only"),
    (["bench", "--runs", "0", "--runtime", "torch", "--variant", "M1C4", "--input", "8x8"], "--runs"),
    (["bench", "compare", "missing.json", "other.json"], "cannot read benchmark report"),
    (["bench", "frobnicate"], "unknown bench action"),
])
def test_bench_bad_input_is_one_line_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_bench_input_is_photo_content_by_default_noise_on_request():
    from edgesr.bench.host import bench_input

    photo = bench_input((2, 1, 40, 700), 255.0)  # wider than any bundled photo: mirrored
    noise = bench_input((1, 1, 40, 70), 255.0, "noise")
    assert photo.shape == (2, 1, 40, 700) and photo.dtype == np.float32 and 0 <= photo.min() <= photo.max() <= 255
    # photos are smooth: neighbouring pixels differ far less than in uniform noise
    assert np.abs(np.diff(photo, axis=3)).mean() < 0.2 * np.abs(np.diff(noise, axis=3)).mean()
    with pytest.raises(UserError, match="unknown input data"):
        bench_input((1, 1, 8, 8), 255.0, "zeros")


def test_ceiling_is_measured_once_per_cpu_and_threads_then_cached(tmp_path, monkeypatch):
    from edgesr.bench import ceiling

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(ceiling, "measure", lambda t: calls.append(t) or {"fp32_gflops": 100.0 * t, "int8_gops": 800.0})
    assert ceiling.ceiling(1, "cpu A")["fp32_gflops"] == 100.0
    assert ceiling.ceiling(1, "cpu A")["fp32_gflops"] == 100.0
    assert ceiling.ceiling(2, "cpu A")["fp32_gflops"] == 200.0
    assert calls == [1, 2]
    assert ceiling.ceiling_for("int8", {"fp32_gflops": 1.0, "int8_gops": 8.0}) == 8.0
    assert ceiling.ceiling_for("fp16", {"fp32_gflops": 1.0, "int8_gops": 8.0}) == 1.0


def test_the_real_ceiling_measurement_is_positive():
    from edgesr.bench.ceiling import measure

    measured = measure(1)
    assert measured["fp32_gflops"] > 1 and (measured["int8_gops"] is None or measured["int8_gops"] > 1)
