#!/usr/bin/env python3
"""Stand-in for TFLite's benchmark_model on the loopback test device.

It really runs the .tflite file with the LiteRT interpreter and prints what the official tool
prints (same flags, same lines, microseconds, C++ stream number formatting), so the adb
harness is exercised end to end without a phone. It is not a substitute for on-device numbers.

Like the official tool it reads the input tensor from --input_layer_value_files (raw bytes),
writes the output tensors' raw bytes to --output_filepath, reports how much of the graph its
delegate took ("completely/partially executed by the delegate w/ N delegate kernels") and fails
on CPU fallback with --require_full_delegation=true. --use_xnnpack=false runs TFLite's builtin
kernels. Device properties tell it how to misbehave, as a faulty phone would:
  edgesr.standin.gpu=fp16         a GPU delegate exists and, unless --gpu_precision_loss_allowed=false,
                                  stores its input and output tensors in fp16 (not its arithmetic)
  edgesr.standin.gpu=fp16-always  ... and ignores --gpu_precision_loss_allowed=false (a driver bug)
  edgesr.standin.output=corrupt   one output value is off by 3% of the largest, or by 64 int8 levels (a wrong
                                  kernel)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

KNOWN_FLAGS = {"graph", "num_threads", "warmup_runs", "num_runs", "use_xnnpack", "use_gpu", "use_nnapi",
               "enable_op_profiling", "report_peak_memory_footprint", "input_layer", "input_layer_shape",
               "min_secs", "warmup_min_secs", "max_secs", "input_layer_value_files", "output_filepath",
               "require_full_delegation", "gpu_precision_loss_allowed", "allow_fp16"}


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


def _split_value_file(item: str) -> tuple[str, str]:
    """benchmark_model's NAME:PATH split, where '::' in NAME stands for ':' ("input::0:/tmp/x")."""
    i = 0
    while i < len(item):
        if item.startswith("::", i):
            i += 2
        elif item[i] == ":":
            return item[:i].replace("::", ":"), item[i + 1:]
        else:
            i += 1
    return item, ""


def _prop(name: str) -> str:
    """A device property (the loopback device's getprop), '' if unset."""
    try:
        return subprocess.run(["getprop", name], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _xnnpack_takes(graph: str, shape: list[int] | None) -> tuple[int, bool]:
    """(delegate kernels, whether XNNPACK takes every node), from LiteRT's node lists with node
    fusion on (one DELEGATE node per partition) and off (one per delegated node)."""
    from ai_edge_litert.interpreter import Interpreter

    def nodes(fuse: bool) -> list[dict]:
        interpreter = Interpreter(model_path=graph, experimental_disable_delegate_node_fusion=not fuse)
        if shape:
            interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], shape, strict=False)
        interpreter.allocate_tensors()
        return interpreter._get_ops_details()

    kernels = sum(op["op_name"] == "DELEGATE" for op in nodes(fuse=True))
    unfused = nodes(fuse=False)
    delegated = {tuple(op["outputs"]) for op in unfused if op["op_name"] == "DELEGATE"}
    outside = [op for op in unfused if op["op_name"] != "DELEGATE" and tuple(op["outputs"]) not in delegated]
    return kernels, kernels == 1 and not outside


def _applied(name: str, kernels: int, complete: bool) -> str:
    """benchmark_model's line about a delegate it applied."""
    if complete:
        return (f"INFO: Explicitly applied {name} delegate, and the model graph will be completely executed by the "
                "delegate.")
    if kernels:
        return (f"INFO: Explicitly applied {name} delegate, and the model graph will be partially executed by the "
                f"delegate w/ {kernels} delegate kernels.")
    return f"INFO: Though {name} delegate is explicitly applied, the model graph will not be executed by the delegate."


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
    gpu = flags.get("use_gpu") == "true"
    gpu_mode = _prop("edgesr.standin.gpu")
    if gpu and not gpu_mode:
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
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    xnnpack = flags.get("use_xnnpack", "true") == "true" and not gpu
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=graph, num_threads=threads if threads > 0 else None,
                              experimental_op_resolver_type=resolver)
    print(f"INFO: Loaded model {graph}")
    print(f"INFO: The input model file size (MB): {_cpp(Path(graph).stat().st_size / 1e6)}")
    shape = [int(v) for v in flags["input_layer_shape"].split(",")] if "input_layer_shape" in flags else None
    full = flags.get("require_full_delegation") == "true"
    if xnnpack:
        print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
        kernels, complete = _xnnpack_takes(graph, shape)
        if full and not complete:
            print("ERROR: Disallowed CPU fallback detected.", file=sys.stderr)
            return 1
        print(_applied("XNNPACK", kernels, complete))
    if gpu:  # emulated: LiteRT's builtin kernels compute, fp16 tensor storage at the edges
        print("INFO: Created TensorFlow Lite delegate for GPU.")
        print(_applied("GPU", 1, True))
    fp16 = gpu and (flags.get("gpu_precision_loss_allowed", "true") != "false" or gpu_mode == "fp16-always")
    detail = interpreter.get_input_details()[0]
    if shape:
        interpreter.resize_tensor_input(detail["index"], shape, strict=False)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    init_us = int((time.perf_counter() - start) * 1e6)
    print(f"INFO: Initialized session in {_cpp(init_us / 1000)}ms.")
    rng = np.random.default_rng(0)
    value_file = _split_value_file(flags.get("input_layer_value_files", ""))[1]
    if value_file:
        raw = Path(value_file).read_bytes()
        expected = int(np.prod(detail["shape"])) * np.dtype(detail["dtype"]).itemsize
        if len(raw) != expected:
            print(f"ERROR: The size of {value_file} is {len(raw)} bytes. It should be {expected} bytes.",
                  file=sys.stderr)
            return 1
        data = np.frombuffer(raw, dtype=detail["dtype"]).reshape(detail["shape"])
    elif np.issubdtype(detail["dtype"], np.integer):
        info = np.iinfo(detail["dtype"])
        data = rng.integers(info.min, info.max, detail["shape"], dtype=detail["dtype"])
    else:
        data = rng.random(detail["shape"]).astype(detail["dtype"])
    if fp16 and data.dtype == np.float32:
        data = data.astype(np.float16).astype(np.float32)

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
    if flags.get("output_filepath"):
        outputs = []
        for out in interpreter.get_output_details():
            value = interpreter.get_tensor(out["index"]).copy()
            if fp16 and value.dtype == np.float32:
                value = value.astype(np.float16).astype(np.float32)
            if _prop("edgesr.standin.output") == "corrupt":
                flat, i = value.reshape(-1), value.size // 2
                if value.dtype.kind == "f":
                    flat[i] += 0.03 * float(np.abs(flat).max())
                else:  # an int8 output: a quarter of its range, away from the end of the range
                    flat[i] += -64 if flat[i] > 0 else 64
            outputs.append(value.tobytes())
        Path(flags["output_filepath"]).write_bytes(b"".join(outputs))
    peak = _peak_mb()
    print(f"INFO: Memory footprint delta from the start of the tool (MB): init={_cpp(peak * 0.6)} "
          f"overall={_cpp(peak)}")
    if flags.get("report_peak_memory_footprint") == "true":
        print(f"INFO: Overall peak memory footprint (MB) via periodic monitoring: {_cpp(peak)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
