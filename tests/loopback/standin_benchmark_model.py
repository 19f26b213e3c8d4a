#!/usr/bin/env python3
"""Stand-in for TFLite's benchmark_model on the loopback test device.

It really runs the .tflite file with the LiteRT interpreter and prints what the official tool
prints (same flags, same lines, microseconds, C++ stream number formatting), so the adb
harness is exercised end to end without a phone. It is not a substitute for on-device numbers.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

KNOWN_FLAGS = {"graph", "num_threads", "warmup_runs", "num_runs", "use_xnnpack", "use_gpu", "use_nnapi",
               "enable_op_profiling", "report_peak_memory_footprint", "input_layer", "input_layer_shape",
               "min_secs", "warmup_min_secs", "max_secs"}


def _cpp(value: float) -> str:
    """A double as std::ostream prints it by default (6 significant digits)."""
    text = f"{value:.6g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{exponent[0]}{int(exponent[1:]):02d}"
    return text


def _stat_line(us: list[int]) -> str:
    if len(set(us)) == 1:
        return f"count={len(us)} curr={us[-1]}" + ("(all same)" if len(us) > 1 else "")
    std = int(round(statistics.pstdev(us)))
    return (f"count={len(us)} first={us[0]} curr={us[-1]} min={min(us)} max={max(us)} "
            f"avg={_cpp(sum(us) / len(us))} std={std}")


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str]) -> int:
    flags, unconsumed = {}, []
    for arg in argv:
        name, _, value = arg.lstrip("-").partition("=")
        if arg.startswith("--") and name in KNOWN_FLAGS:
            flags[name] = value
        else:
            unconsumed.append(arg)
    print("INFO: STARTING!")
    print("INFO: edgesr stand-in benchmark_model: LiteRT on the test rig's CPU, not a phone's")
    if unconsumed:
        print("Unconsumed cmdline flags: " + " ".join(unconsumed))
    graph = flags.get("graph", "")
    threads = int(flags.get("num_threads", "-1"))
    print(f"INFO: Graph: [{graph}]")
    print(f"INFO: Num threads: [{threads}]")
    if flags.get("use_gpu") == "true":
        print("ERROR: Failed to create GPU delegate: no OpenCL or OpenGL ES on this device.", file=sys.stderr)
        return 1
    if flags.get("use_nnapi") == "true":
        print("ERROR: NNAPI delegate is not supported on this device.", file=sys.stderr)
        return 1
    if not Path(graph).is_file():
        print(f"ERROR: Could not open '{graph}'.", file=sys.stderr)
        return 1
    start = time.perf_counter()
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=graph, num_threads=threads if threads > 0 else None)
    print(f"INFO: Loaded model {graph}")
    print(f"INFO: The input model file size (MB): {_cpp(Path(graph).stat().st_size / 1e6)}")
    if flags.get("use_xnnpack", "true") == "true":
        print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
    detail = interpreter.get_input_details()[0]
    if "input_layer_shape" in flags:
        shape = [int(v) for v in flags["input_layer_shape"].split(",")]
        interpreter.resize_tensor_input(detail["index"], shape, strict=False)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    init_us = int((time.perf_counter() - start) * 1e6)
    print(f"INFO: Initialized session in {_cpp(init_us / 1000)}ms.")
    rng = np.random.default_rng(0)
    if np.issubdtype(detail["dtype"], np.integer):
        info = np.iinfo(detail["dtype"])
        data = rng.integers(info.min, info.max, detail["shape"], dtype=detail["dtype"])
    else:
        data = rng.random(detail["shape"]).astype(detail["dtype"])

    def timed(runs: int) -> list[int]:
        out = []
        for _ in range(runs):
            t = time.perf_counter()
            interpreter.set_tensor(detail["index"], data)
            interpreter.invoke()
            out.append(int((time.perf_counter() - t) * 1e6))
        return out

    warmup_runs, num_runs = int(flags.get("warmup_runs", "1")), int(flags.get("num_runs", "50"))
    print(f"INFO: Running benchmark for at least {warmup_runs} iterations and at least 0.5 seconds but "
          "terminate if exceeding 150 seconds.")
    warm = timed(max(warmup_runs, 1))
    print(f"INFO: {_stat_line(warm)}")
    print(f"INFO: Running benchmark for at least {num_runs} iterations and at least 1 seconds but "
          "terminate if exceeding 150 seconds.")
    runs = timed(max(num_runs, 1))
    print(f"INFO: {_stat_line(runs)}")
    print(f"INFO: Inference timings in us: Init: {init_us}, First inference: {warm[0]}, "
          f"Warmup (avg): {_cpp(sum(warm) / len(warm))}, Inference (avg): {_cpp(sum(runs) / len(runs))}")
    print("INFO: Note: as the benchmark tool itself affects memory footprint, the following is only "
          "APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at "
          "your discretion.")
    peak = _peak_mb()
    print(f"INFO: Memory footprint delta from the start of the tool (MB): init={_cpp(peak * 0.6)} "
          f"overall={_cpp(peak)}")
    if flags.get("report_peak_memory_footprint") == "true":
        print(f"INFO: Overall peak memory footprint (MB) via periodic monitoring: {_cpp(peak)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
