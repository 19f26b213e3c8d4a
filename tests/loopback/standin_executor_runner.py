#!/usr/bin/env python3
"""Stand-in for ExecuTorch's executor_runner on the loopback test device.

It really runs the .pte file with ExecuTorch's runtime (Python bindings, XNNPACK delegate) and
prints what the official runner logs (same gflags flags, same ET_LOG lines, milliseconds), so the
adb harness is exercised end to end without a phone. It is not a substitute for on-device numbers.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

KNOWN_FLAGS = {"model_path", "num_executions", "cpu_threads", "input_shapes", "print_output", "inputs",
               "output_file", "method_name"}
STARTED = time.monotonic()


def log(message: str, level: str = "I") -> None:
    """An ET_LOG line: level, time since start, source location, message."""
    t = time.monotonic() - STARTED
    stamp = f"{int(t // 3600):02d}:{int(t // 60 % 60):02d}:{t % 60:09.6f}"
    print(f"{level} {stamp} executorch:executor_runner.cpp:0] {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    flags = {}
    for arg in argv:
        name, _, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-") or name not in KNOWN_FLAGS:
            print(f"ERROR: unknown command line flag '{name}'", file=sys.stderr)
            return 1
        flags[name] = value
    log("edgesr stand-in executor_runner: ExecuTorch on the test rig's CPU, not a phone's")
    threads = int(flags.get("cpu_threads", "-1"))
    path = flags.get("model_path", "model.pte")
    import torch
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    if threads > 0:
        log(f"Resetting threadpool with num threads = {threads}")
        portable_lib._unsafe_reset_threadpool(threads)
    if not Path(path).is_file():
        log("In function main(), assert failed (loader.ok()): FileDataLoader::from() failed: 0x22", "E")
        return 1
    before = time.perf_counter()
    method = Runtime.get().load_program(path).load_method(flags.get("method_name") or "forward")
    log(f"Model loaded in {(time.perf_counter() - before) * 1000:f} ms.")
    if "input_shapes" not in flags:
        log("In function main(), assert failed: the stand-in needs --input_shapes (dynamic shapes)", "E")
        return 1
    shape = [int(d) for d in flags["input_shapes"].split("x")]
    log(f"Inputs resized to {flags['input_shapes']}")
    x = torch.ones(shape)  # the official runner fills inputs with ones when no --inputs are given
    runs = int(flags.get("num_executions", "1"))
    total = 0.0
    for i in range(runs):
        before = time.perf_counter()
        method.execute([x])
        elapsed = (time.perf_counter() - before) * 1000
        total += elapsed
        log(f"Iteration {i + 1} of {runs}: {elapsed:f} ms")
    log(f"Model executed successfully {runs} time(s) in {total:f} ms.")
    log("1 outputs: ")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
