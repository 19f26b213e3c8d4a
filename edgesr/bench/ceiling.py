"""This machine's measured compute ceiling, the yardstick of every host bench: the best of a few
2048x2048 matrix products, fp32 (torch.matmul: MKL/oneDNN SGEMM) and int8 (torch._int_mm: VNNI/AMX
where the CPU has them; none where it is slower than fp32, a scalar fallback), per thread count.
Measured once per CPU, thread count and torch version, then cached (a nominal clock x lanes x
FMA-units formula was 15% under the fp32 measurement on this project's Xeon and says nothing
about int8)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

SIZE = 2048
REPEATS = 5
METHOD = f"best of {REPEATS} {SIZE}x{SIZE} products: torch.matmul (fp32), torch._int_mm (int8)"


def cache_path() -> Path:
    """$XDG_CACHE_HOME/edgesr/ceiling.json (default ~/.cache)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "edgesr" / "ceiling.json"


def _best_seconds(run) -> float:
    run()  # warm-up: thread pool, packing buffers
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _without_int8_fallback(entry: dict) -> dict:
    """No int8 ceiling where int8 GEMM is slower than fp32: that is a scalar fallback, not the CPU's
    int8 rate (any vectorized int8 GEMM on x86, AVX2's vpmaddubsw, VNNI or AMX, outruns SGEMM;
    measured on an AVX2-only AMD EPYC: 0.67 GOP/s int8 vs 68 GFLOP/s fp32)."""
    int8 = entry.get("int8_gops")
    return {**entry, "int8_gops": None} if int8 is not None and int8 < entry["fp32_gflops"] else entry


def measure(threads: int) -> dict[str, float | None]:
    """fp32 GFLOP/s and int8 GOP/s (2 x multiply-adds per second) of a square matrix product."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        flops = 2.0 * SIZE ** 3
        a, b = torch.randn(SIZE, SIZE), torch.randn(SIZE, SIZE)
        fp32 = flops / _best_seconds(lambda: torch.matmul(a, b)) / 1e9
        int8 = None
        if hasattr(torch, "_int_mm"):
            qa = torch.randint(-128, 127, (SIZE, SIZE), dtype=torch.int8)
            qb = torch.randint(-128, 127, (SIZE, SIZE), dtype=torch.int8)
            try:
                int8 = flops / _best_seconds(lambda: torch._int_mm(qa, qb)) / 1e9
            except RuntimeError:  # no int8 GEMM kernel for this CPU in this torch build
                int8 = None
        return _without_int8_fallback({"fp32_gflops": fp32, "int8_gops": int8})
    finally:
        torch.set_num_threads(before)


def ceiling(threads: int, cpu_model: str) -> dict[str, float | None]:
    """The cached measurement for this CPU, thread count and torch version, measured if missing."""
    import torch

    key = f"{cpu_model} | {threads} thread(s) | torch {torch.__version__}"
    path = cache_path()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    entry = cached.get(key)
    if isinstance(entry, dict) and isinstance(entry.get("fp32_gflops"), (int, float)):
        return _without_int8_fallback(entry)  # entries cached before fallbacks were refused too
    entry = measure(threads)
    cached[key] = entry
    try:  # a cache that cannot be written (read-only home) only costs the next run a second
        from edgesr.atomic import write_bytes_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, json.dumps(cached, indent=1).encode(), force=True)
    except OSError:
        pass
    return entry


def ceiling_for(precision: str, entry: dict) -> float | None:
    """The ceiling a case of `precision` is measured against: int8 GEMM for int8, else fp32 (fp16
    files compute in fp32 on CPUs)."""
    return entry.get("int8_gops") if precision == "int8" else entry.get("fp32_gflops")
