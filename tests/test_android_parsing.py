"""benchmark_model and executor_runner output formats, adb device lists, device facts and core masks (pure
parsing)."""

import pytest

from edgesr.android.adb import parse_devices
from edgesr.android.facts import core_mask, parse_cores, parse_getprop, parse_thermal
from edgesr.android.output import parse_benchmark_output, parse_executor_runner_output
from edgesr.errors import ToolError, UserError

CURRENT = """INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/m.tflite]
INFO: Loaded model /data/local/tmp/m.tflite
INFO: Initialized session in 3.21ms.
INFO: count=12 first=50123 curr=40123 min=39000 max=50123 avg=41000.5 std=2000
INFO: count=50 first=40000 curr=40100 min=39500 max=42000 avg=40500.2 std=500
INFO: Inference timings in us: Init: 3210, First inference: 50123, Warmup (avg): 41000.5, Inference (avg): 40500.2
INFO: Memory footprint delta from the start of the tool (MB): init=4.5 overall=10.25
INFO: Overall peak memory footprint (MB) via periodic monitoring: 12.3
"""


def test_current_format():
    out = parse_benchmark_output(CURRENT)
    assert (out.init_us, out.first_us, out.warmup_avg_us, out.inference_avg_us) == (3210, 50123, 41000.5, 40500.2)
    assert out.steady.count == 50 and out.steady.min_us == 39500 and out.steady.std_us == 500
    assert out.warmup.count == 12 and out.warmup.first_us == 50123
    assert (out.memory_init_mb, out.memory_overall_mb, out.peak_memory_mb) == (4.5, 10.25, 12.3)


def test_all_same_and_scientific_notation():
    text = ("INFO: count=1 curr=1234567\n"
            "INFO: count=5 curr=1500000(all same)\n"
            "INFO: Inference timings in us: Init: 2.5e+05, First inference: 1.23457e+06, "
            "Warmup (avg): 1.23457e+06, Inference (avg): 1.5e+06\n")
    out = parse_benchmark_output(text)
    assert out.inference_avg_us == 1.5e6 and out.init_us == 2.5e5
    assert out.steady.count == 5 and out.steady.min_us == out.steady.max_us == 1.5e6 and out.steady.std_us == 0
    assert out.warmup.count == 1 and out.warmup.avg_us == 1234567
    assert out.peak_memory_mb is None


def test_millisecond_variant_is_converted_to_microseconds():
    text = "Inference timings in ms: Init: 3.5, First inference: 50.1, Warmup (avg): 41, Inference (avg): 40.5\n"
    out = parse_benchmark_output(text)
    assert out.init_us == 3500 and out.inference_avg_us == 40500


def test_older_binary_format():
    text = ("count=20 first=100 curr=90 min=80 max=100 avg=91 std=5\n"
            "Average inference timings in us: Warmup: 120.5, Init: 2000, Inference: 91\n")
    out = parse_benchmark_output(text)
    assert (out.warmup_avg_us, out.init_us, out.inference_avg_us, out.first_us) == (120.5, 2000, 91, None)
    assert out.steady.count == 20


def test_unconsumed_flags_and_missing_timings_are_errors():
    with pytest.raises(ToolError, match="did not accept the flags --use_fast=1"):
        parse_benchmark_output("INFO: STARTING!\nUnconsumed cmdline flags: --use_fast=1\n" + CURRENT)
    with pytest.raises(ToolError, match="no inference timings"):
        parse_benchmark_output("INFO: STARTING!\nERROR: Could not open model\n")


def test_parse_devices_states():
    text = """List of devices attached
* daemon started successfully
R58M123ABC             device usb:1-1 product:a52q model:SM_A525F device:a52q transport_id:3
127.0.0.1:6020         offline transport_id:4
emulator-5554          unauthorized transport_id:5

"""
    devices = parse_devices(text)
    assert [(d.serial, d.state) for d in devices] == [
        ("R58M123ABC", "device"), ("127.0.0.1:6020", "offline"), ("emulator-5554", "unauthorized")]
    assert devices[0].details["model"] == "SM_A525F"


def test_device_facts_parsing():
    props = parse_getprop("[ro.product.model]: [Pixel 8]\n[ro.build.version.release]: [14]\n[bad line]\n")
    assert props == {"ro.product.model": "Pixel 8", "ro.build.version.release": "14"}
    cores = parse_cores("cpu0 1800000\ncpu1 1800000\ncpu4 2400000\ncpu7 3000000\ncpu8 \n")
    assert cores == {0: 1800000, 1: 1800000, 4: 2400000, 7: 3000000, 8: None}
    assert parse_thermal("cpu-0 41000\nbattery 30\nbroken x\n") == {"cpu-0": 41.0, "battery": 30.0}


@pytest.mark.parametrize("choice,mask", [("all", "ff"), ("big", "f0"), ("little", "f"), ("0x80", "80"), ("c0", "c0")])
def test_core_masks(choice, mask):
    cores = {c: 1800000 for c in range(4)} | {4: 2400000, 5: 2400000, 6: 2400000, 7: 3000000}
    assert core_mask(cores, choice) == mask


def test_core_mask_errors():
    cores = {0: 1800000, 1: 1800000}
    with pytest.raises(UserError, match="not all, big, little"):
        core_mask(cores, "middle")
    with pytest.raises(UserError, match="does not have"):
        core_mask(cores, "f0")
    assert core_mask(cores, "big") == "3"  # one cluster: big means every core


EXECUTOR_RUNNER_LOG = """I 00:00:00.000412 executorch:executor_runner.cpp:236] Resetting threadpool with num threads = 1
I 00:00:00.012800 executorch:executor_runner.cpp:318] Model loaded in 12.500000 ms.
I 00:00:00.013000 executorch:executor_runner.cpp:420] Inputs resized to 1x1x270x480
I 00:00:00.050000 executorch:executor_runner.cpp:470] Iteration 1 of 4: 40.000000 ms
I 00:00:00.081000 executorch:executor_runner.cpp:470] Iteration 2 of 4: 31.000000 ms
I 00:00:00.111000 executorch:executor_runner.cpp:470] Iteration 3 of 4: 30.000000 ms
I 00:00:00.144000 executorch:executor_runner.cpp:470] Iteration 4 of 4: 33.000000 ms
I 00:00:00.144100 executorch:executor_runner.cpp:485] Model executed successfully 4 time(s) in 134.000000 ms.
I 00:00:00.144200 executorch:executor_runner.cpp:490] 1 outputs:
"""


def test_executor_runner_iterations_split_into_warmup_and_timed_runs():
    out = parse_executor_runner_output(EXECUTOR_RUNNER_LOG, warmup=1)
    assert out.runs_us == (31000.0, 30000.0, 33000.0) and out.first_us == 40000.0 and out.init_us == 12500.0
    assert out.steady.count == 3 and out.steady.min_us == 30000.0 and out.steady.max_us == 33000.0
    assert abs(out.inference_avg_us - 31333.333) < 0.01 and out.warmup.count == 1 and not out.standin


@pytest.mark.parametrize("broken", [
    EXECUTOR_RUNNER_LOG.replace("Iteration 3 of 4: 30.000000 ms\n", ""),  # a run missing: counts disagree
    EXECUTOR_RUNNER_LOG.replace("Model loaded in", "Model ready in"),
    EXECUTOR_RUNNER_LOG.split("Model executed")[0],  # died before the summary
])
def test_executor_runner_output_missing_a_line_is_an_error(broken):
    with pytest.raises(ToolError, match="executor_runner printed no per-iteration timings"):
        parse_executor_runner_output(broken, warmup=1)


def test_executor_runner_unknown_flag_names_it():
    with pytest.raises(ToolError, match="does not know the flag --input_shapes: build a runner that has it"):
        parse_executor_runner_output("ERROR: unknown command line flag 'input_shapes'\n", warmup=1)


def test_delegation_lines_of_benchmark_model():
    from edgesr.android.output import Delegated, parse_delegation

    full = "INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate."
    part = ("INFO: Explicitly applied GPU delegate, and the model graph will be partially executed by the delegate w/ "
            "3 delegate kernels.")
    none = "INFO: Though NNAPI delegate is explicitly applied, the model graph will not be executed by the delegate."
    assert parse_delegation(CURRENT + full) == Delegated("XNNPACK", 1, True)
    assert parse_delegation(part) == Delegated("GPU", 3, False)
    assert parse_delegation(none) == Delegated("NNAPI", 0, False)
    assert parse_delegation(CURRENT) is None  # no delegate applied: TFLite's own kernels
    assert [d.format() for d in (Delegated("XNNPACK", 1, True), Delegated("GPU", 3, False))] == [
        "all (XNNPACK)", "partial (GPU, 3 kernels)"]


def test_repeats_pool_into_one_result_with_their_cv():
    from edgesr.android.bench import coefficient_of_variation
    from edgesr.android.output import hottest_zones, pooled

    a = parse_benchmark_output(CURRENT)
    b = parse_benchmark_output(CURRENT.replace("avg=40500.2 std=500", "avg=42500.2 std=300")
                               .replace("Inference (avg): 40500.2", "Inference (avg): 42500.2"))
    both = pooled([a, b])
    assert both.inference_avg_us == pytest.approx(41500.2) and both.steady.count == 100
    # pooled std: within-run variances plus the spread of the means
    assert both.steady.std_us == pytest.approx(((500 ** 2 + 300 ** 2) / 2 + 1000 ** 2) ** 0.5)
    assert coefficient_of_variation([40500.2, 42500.2]) == pytest.approx(1000 / 41500.2)
    assert coefficient_of_variation([1.0]) is None
    text = ("edgesr: hottest thermal zone before run: 41000 milli-C\n"
            "edgesr: hottest thermal zone after run: 43500 milli-C")
    assert hottest_zones(text) == {"before": 41.0, "after": 43.5}
    assert hottest_zones("edgesr: hottest thermal zone before run: 0 milli-C") == {"before": None, "after": None}


def test_phone_bounds_follow_the_delegate_and_its_flags():
    from edgesr.android.parity import bound_precision

    assert bound_precision("xnnpack", "fp32", ()) == "fp32" and bound_precision("cpu", "fp16", ()) == "fp16"
    assert bound_precision("gpu", "fp32", ()) == "fp16-compute"  # TFLite's GPU default loses precision
    assert bound_precision("gpu", "fp32", ("--gpu_precision_loss_allowed=false",)) == "fp32"
    assert bound_precision("gpu", "int8", ()) == "int8"
    assert bound_precision("nnapi", "fp32", ()) == "fp32"
    assert bound_precision("nnapi", "fp32", ("--nnapi_allow_fp16=true",)) == "fp16-compute"


def test_adb_server_addresses():
    from edgesr.android.adb import server_args

    assert server_args("192.168.1.20:5037") == ("-H", "192.168.1.20", "-P", "5037")
    for bad in ("nowhere", "host:", ":5037", "host:99999"):
        with pytest.raises(UserError, match="is not HOST:PORT"):
            server_args(bad)
