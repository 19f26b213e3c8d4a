"""One benchmark case in its own process: load the model, then time runs on command.

Protocol (JSON lines): the first stdin line is the case spec; later lines are
{"op": "run", "n": N} (answered with latencies) and {"op": "finish"} (answered with the
process's peak resident memory). Library output goes to stderr, never to the protocol.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from edgesr.errors import EdgeSRError


def _os_threads() -> int:
    task = Path("/proc/self/task")
    return len(list(task.iterdir())) if task.is_dir() else 0


def _memory_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process. ru_maxrss is no use here: Linux keeps the
    parent's high-water mark across fork + exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _import_runtime(runtime: str) -> None:
    """Import the runtime's libraries before the load timer starts."""
    import edgesr.runners  # noqa: F401

    if runtime in ("torch", "torch-train"):
        import edgesr.model  # noqa: F401  (torch and the model code)
    elif runtime == "onnxruntime":
        import onnxruntime  # noqa: F401
    elif runtime == "executorch":
        import executorch.runtime  # noqa: F401
    else:
        import ai_edge_litert.interpreter  # noqa: F401


def _open(spec: dict):
    """Open the model for a case; returns (runner, threads as reported by the runtime)."""
    runtime, threads, path = spec["runtime"], spec["threads"], Path(spec["path"])
    if runtime in ("torch", "torch-train"):
        import torch

        from edgesr.model import prepare

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        prepared = prepare(spec["model"], weights=path)
        if runtime == "torch-train":
            return prepared.family.reference(prepared.train, prepared.deployable), torch.get_num_threads()
        return prepared.deployable.torch_runner(), torch.get_num_threads()
    from edgesr.model_files import open_model

    model = open_model(path, threads)
    applied = {graph.threads for graph in model.graphs.values()}
    return model, applied.pop() if len(applied) == 1 else sorted(applied)


def main() -> int:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints lands on stderr

    def reply(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")

    try:
        spec = json.loads(sys.stdin.readline())
        x = np.load(spec["input"])
        _import_runtime(spec["runtime"])
        rss_before = _memory_mb("VmRSS")
        threads_before = _os_threads()
        start = time.perf_counter()
        graph, threads_applied = _open(spec)
        call = graph.bind(x)
        init_ms = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        call()
        first_ms = (time.perf_counter() - start) * 1e3
        if threads_applied != spec["threads"]:
            raise RuntimeError(f"{spec['runtime']} runs {threads_applied} threads, not {spec['threads']}")
        reply({"init_ms": init_ms, "first_ms": first_ms, "threads_applied": threads_applied,
               "os_threads_added": _os_threads() - threads_before, "rss_before_load_mb": rss_before})
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] == "finish":
                reply({"peak_rss_mb": _memory_mb("VmHWM")})
                return 0
            latencies = []
            for _ in range(command["n"]):
                start = time.perf_counter_ns()
                call()
                latencies.append((time.perf_counter_ns() - start) / 1e6)
            reply({"latencies_ms": latencies})
    except Exception as exc:  # reported to the parent, which turns it into a one-line error
        text = exc.template if isinstance(exc, EdgeSRError) else str(exc)  # keeps the «option» marks
        reply({"error": f"{type(exc).__name__}: {text}".splitlines()[0]})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
