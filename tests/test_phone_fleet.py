"""On the phone: `verify --device adb` proves each delegate's outputs against the training graph,
and fleets of phones behind several REAL adb servers (private ports, `adb -H/-P`) run in one
command. Loopback devices and the stand-in benchmark_model (labelled as such) play the phones; a
device property tells the stand-in to corrupt its output or to emulate an fp16 GPU delegate."""

import json
from pathlib import Path

import pytest
from loopback.loopback_device import AdbServer
from loopback.rig import start_phone, unplug_when

from edgesr.cli import main

STANDIN = Path(__file__).resolve().parent / "loopback" / "standin_benchmark_model.py"
MODEL = ["--variant", "M1C4", "--scale", "2"]
VERIFY = ["verify", "--device", "adb", *MODEL, "--sizes", "16x16", "--benchmark-binary", str(STANDIN)]
BENCH = ["bench", "--device", "adb", *MODEL, "--input", "12x10", "16x14", "--warmup", "1", "--runs", "3",
         "--cooldown", "0", "--max-repeats", "1", "--benchmark-binary", str(STANDIN)]


@pytest.fixture(scope="module")
def servers():
    """Two real adb servers on private ports, as on two USB-hub hosts."""
    pair = (AdbServer(), AdbServer())
    for server in pair:
        server.start()
    yield pair
    for server in pair:
        server.stop()


@pytest.fixture
def phones(tmp_path, servers):
    """phones(props, ...): one loopback phone per props dict, the i-th behind server i % 2."""
    started = []

    def make(*props: dict):
        for i, p in enumerate(props):
            server = servers[i % 2]
            phone = start_phone(tmp_path / f"phone{i}", server, props=p)
            phone.server = server
            started.append(phone)
        return started

    yield make
    for phone in started:
        phone.stop()
        phone.server.adb("disconnect", phone.serial, check=False)


def _address(server: AdbServer) -> str:
    return f"127.0.0.1:{server.port}"


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if not line.startswith(("[edgesr", "NOTICE"))]
    assert "Traceback" not in captured.err
    return code, captured.out, err


def test_verify_on_a_phone_checks_every_delegate_and_precision(phones, servers, tmp_path, capsys):
    phone, = phones({"edgesr.standin.gpu": "fp16"})
    report = tmp_path / "v.json"
    code, out, err = _run([*VERIFY, "--adb-server", _address(servers[0]), "--delegate", "cpu", "xnnpack", "gpu",
                           "--precision", "fp32", "int8", "--json", str(report)], capsys)
    assert code == 0, (out, err)
    result = json.loads(report.read_text())
    rows = {(r["delegate"], r["precision"]): r for r in result["rows"]}
    assert set(rows) == {(d, p) for d in ("cpu", "xnnpack", "gpu") for p in ("fp32", "int8")}
    assert all(r["result"] == "PASS" and r["check"]["inputs"] == 2 for r in rows.values())
    # bounds per precision as on the host; the GPU delegate computes fp16 by default
    assert rows[("xnnpack", "fp32")]["bound"] == rows[("cpu", "fp32")]["bound"] == "fp32"
    assert rows[("gpu", "fp32")]["bound"] == "fp16-compute" and rows[("gpu", "int8")]["bound"] == "int8"
    assert rows[("gpu", "fp32")]["check"]["max_abs"] > 10 * rows[("xnnpack", "fp32")]["check"]["bound"]
    # how much each delegate took, as benchmark_model said
    assert rows[("xnnpack", "fp32")]["delegation"] == "all (XNNPACK)" and rows[("cpu", "fp32")]["delegation"] is None
    assert rows[("gpu", "fp32")]["delegation"] == "all (GPU)"
    device = result["devices"][0]
    assert device["label"] == f"adb:{_address(servers[0])}/{phone.serial}" and device["benchmark_tool"] == "stand-in"
    assert "the stand-in benchmark_model" in device["ran_on"] and "NOT a phone's numbers" in device["ran_on"]
    assert "NOT a phone's numbers" in out and "all 6 phone checks passed" in out
    assert not any(p.suffix in (".tflite", ".bin") for p in phone.work.iterdir())  # cleaned up


def test_gpu_precision_bound_follows_the_flag_both_ways(phones, servers, tmp_path, capsys):
    honest, broken = phones({"edgesr.standin.gpu": "fp16"}, {"edgesr.standin.gpu": "fp16-always"})
    base = [*VERIFY, "--adb-server", _address(servers[0]), "--adb-server", _address(servers[1]), "--delegate", "gpu",
            "--precision", "fp32"]
    code, out, err = _run([*base, "--all-devices"], capsys)
    assert code == 0, (out, err)  # fp16 on both, judged as fp16
    strict = [*base, "--benchmark-arg=--gpu_precision_loss_allowed=false", "--json", str(tmp_path / "v.json")]
    code, out, err = _run([*strict, "--serial", honest.serial], capsys)
    assert code == 0, (out, err)  # computes fp32 when told, judged as fp32
    code, out, err = _run([*strict, "--serial", honest.serial, broken.serial, "--force"], capsys)
    # the driver that ignores the flag fails the fp32 bound, by name
    assert code == 1 and len(err) == 1 and f"{broken.serial} gpu fp32: tflite-fp32 on gpu differs" in err[0], err
    rows = json.loads((tmp_path / "v.json").read_text())["rows"]
    assert [(r["device"].endswith(honest.serial), r["bound"], r["result"]) for r in rows] == [
        (True, "fp32", "PASS"), (False, "fp32", "FAIL")]


def test_corrupt_phone_output_fails_verify_on_that_phone_only(phones, servers, tmp_path, capsys):
    good, bad = phones({}, {"edgesr.standin.output": "corrupt"})
    report = tmp_path / "v.json"
    code, out, err = _run([*VERIFY, "--adb-server", _address(servers[0]), "--adb-server", _address(servers[1]),
                           "--all-devices", "--precision", "fp32", "fp16", "--json", str(report)], capsys)
    assert code == 1 and len(err) == 1 and "FAILED: 2 problem(s)" in err[0] and bad.serial in err[0], err
    rows = json.loads(report.read_text())["rows"]
    assert {(r["device"].split("/")[-1], r["precision"], r["result"]) for r in rows} == {
        (good.serial, "fp32", "PASS"), (good.serial, "fp16", "PASS"), (bad.serial, "fp32", "FAIL"),
        (bad.serial, "fp16", "FAIL")}
    assert "device" in out.splitlines()[4]  # the table has a device column (after the header lines)


def test_full_delegation_can_be_required(phones, servers, tmp_path, capsys):
    phones({})
    base = [*VERIFY, "--adb-server", _address(servers[0]), "--precision", "int8", "--int8-form", "native",
            "--json", str(tmp_path / "v.json"), "--force"]
    code, out, err = _run(base, capsys)  # XNNPACK has no int8 PReLU: the native int8 graph is split
    assert code == 0, (out, err)
    row, = json.loads((tmp_path / "v.json").read_text())["rows"]
    assert row["delegation"].startswith("partial (XNNPACK,") and row["result"] == "PASS"
    code, out, err = _run([*base, "--require-full-delegation"], capsys)
    assert code == 1 and len(err) == 1 and "left part of" in err[0] and "full delegation was required" in err[0]
    row, = json.loads((tmp_path / "v.json").read_text())["rows"]
    assert row["result"] == "ERROR"


def test_fleet_bench_one_report_and_a_phone_lost_mid_run(phones, servers, tmp_path, capsys):
    first, second = phones({}, {})
    fleet = ["--adb-server", _address(servers[0]), "--adb-server", _address(servers[1]), "--all-devices"]
    out_dir = tmp_path / "out"
    code, out, err = _run([*BENCH, *fleet, "--json", str(out_dir / "r.json"), "--plot", str(out_dir / "r.png")],
                          capsys)
    assert code == 0, (out, err)
    report = json.loads((out_dir / "r.json").read_text())
    labels = [f"adb:{_address(s)}/{p.serial}" for s, p in zip(servers, (first, second), strict=True)]
    assert [m["label"] for m in report["device"]["members"]] == labels and report["failed"] == []
    assert sorted({c["device"] for c in report["cases"]}) == sorted(labels)
    assert [c["device"] for c in report["cases"]].count(labels[0]) == 2  # two input sizes each
    assert all(c["delegation"] == "all (XNNPACK)" for c in report["cases"])
    assert "device" in out and labels[1] in out and "2 devices:" in report["ran_on"]
    assert "NOT a phone's numbers" in report["ran_on"] and (out_dir / "r.png").stat().st_size > 0

    # the second phone vanishes during its cool-down before its first run: the first phone's rows stay complete
    slow = [*BENCH, *fleet, "--input", "12x10", "16x14", "20x18", "--cooldown", "2", "--json",
            str(out_dir / "lost.json")]

    thread = unplug_when(second, lambda: any(p.suffix == ".tflite" for p in second.work.glob("*")), 1.0)
    code, out, err = _run(slow, capsys)
    thread.join(5)
    assert code == 1 and len(err) == 1 and f"FAILED on {labels[1]}: device {second.serial} disconnected" in err[0], err
    lost = json.loads((out_dir / "lost.json").read_text())
    assert [c["device"] for c in lost["cases"]] == [labels[0]] * 3
    assert lost["failed"] == [{"device": labels[1], "reason": err[0].split(": ", 2)[2]}]
    assert f"{labels[1]}: FAILED, no rows" in out


def test_a_benchmark_model_without_output_files_is_named(phones, servers, tmp_path, capsys):
    phones({})
    old = tmp_path / "benchmark_model"
    old.write_text("""#!/bin/sh
echo "Unconsumed cmdline flags: --output_filepath=x"
echo "INFO: Inference timings in us: Init: 100, First inference: 9, Warmup (avg): 9, Inference (avg): 9"
""")
    code, out, err = _run(["verify", "--device", "adb", *MODEL, "--sizes", "16x16", "--benchmark-binary", str(old),
                           "--adb-server", _address(servers[0]), "--precision", "fp32"], capsys)
    assert code == 1 and len(err) == 1 and "did not accept the flags --output_filepath=x" in err[0], err


def test_fleet_options_fail_in_one_line(servers, tmp_path, capsys):
    code, _, err = _run([*BENCH, "--adb-server", "nowhere"], capsys)
    assert code == 2 and len(err) == 1 and "'nowhere' is not HOST:PORT" in err[0]
    code, _, err = _run([*VERIFY, "--adb-server", _address(servers[0]), "--all-devices"], capsys)
    assert code == 2 and len(err) == 1 and "no ready adb device" in err[0]
    code, _, err = _run([*VERIFY, "--adb-server", _address(servers[0]), "--delegate", "tpu"], capsys)
    assert code == 2 and len(err) == 1 and "unknown delegate 'tpu'" in err[0]


def test_a_classsr_bundle_is_routed_on_the_host_and_its_graphs_run_on_the_phone(phones, servers, tmp_path, capsys):
    phones({"edgesr.standin.gpu": "fp16"})
    report = tmp_path / "v.json"
    code, out, err = _run(["verify", "--device", "adb", "--model", "classsr", "--variant", "FSRCNN-4-6-8-S4M1",
                           "--sizes", "64x64", "--benchmark-binary", str(STANDIN), "--adb-server",
                           _address(servers[0]), "--delegate", "xnnpack", "gpu", "--precision", "fp32",
                           "--json", str(report)], capsys)
    assert code == 0, (out, err)
    rows = {r["delegate"]: r for r in json.loads(report.read_text())["rows"]}
    assert rows["xnnpack"]["bound"] == "fp32" and rows["gpu"]["bound"] == "fp16-compute"
    assert all(r["result"] == "PASS" for r in rows.values())
    # the GPU's fp16 shows in the output, well above what the fp32 row may err
    assert rows["gpu"]["check"]["max_abs"] > 10 * rows["xnnpack"]["check"]["bound"]


def test_a_case_that_never_settles_is_flagged(phones, servers, tmp_path, capsys):
    """A benchmark binary whose every run takes 1 ms longer than the last never reaches a 3% CV."""
    phones({})
    drifting = tmp_path / "benchmark_model"
    drifting.write_text("""#!/bin/sh
n=$(cat drift-count 2>/dev/null || echo 0); n=$((n + 1)); echo $n > drift-count
t=$((n * 1000))
echo "INFO: count=3 first=$t curr=$t min=$t max=$t avg=$t std=0"
echo "INFO: Inference timings in us: Init: 100, First inference: $t, Warmup (avg): $t, Inference (avg): $t"
""")
    report = tmp_path / "r.json"
    code, out, err = _run([*BENCH, "--adb-server", _address(servers[0]), "--input", "12x10", "--max-repeats", "3",
                           "--benchmark-binary", str(drifting), "--json", str(report)], capsys)
    assert code == 0, (out, err)
    case, = json.loads(report.read_text())["cases"]
    assert case["repeat_means_ms"] == [1.0, 2.0, 3.0] and case["stable"] is False
    assert case["cv"] == pytest.approx((2 / 3) ** 0.5 / 2)
    assert "40.8!" in out and "1 case(s) never reached a run-to-run CV of 3% in 3 runs" in out


def test_one_command_verifies_and_benchmarks_a_fleet_into_one_report(phones, servers, tmp_path, capsys):
    good, bad = phones({}, {"edgesr.standin.output": "corrupt"})
    report = tmp_path / "r.json"
    code, out, err = _run([*BENCH, "--verify", "--adb-server", _address(servers[0]), "--adb-server",
                           _address(servers[1]), "--all-devices", "--precision", "fp32", "int8", "--json",
                           str(report)], capsys)
    assert code == 1 and len(err) == 1 and "verify FAILED: 2 problem(s)" in err[0] and bad.serial in err[0], err
    result = json.loads(report.read_text())
    assert {(c["device"].split("/")[-1], c["precision"]) for c in result["cases"]} == {
        (p.serial, precision) for p in (good, bad) for precision in ("fp32", "int8")}
    verdicts = {(r["device"].split("/")[-1], r["precision"]): r["result"] for r in result["verify"]["rows"]}
    assert verdicts == {(good.serial, "fp32"): "PASS", (good.serial, "int8"): "PASS",
                        (bad.serial, "fp32"): "FAIL", (bad.serial, "int8"): "FAIL"}
    assert "outputs on the phone(s) against the training graph" in out
