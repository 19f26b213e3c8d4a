"""Cost of one training step, the multi-branch training graph vs what `edgesr train` runs
(the family's training_step_graph; ECBSR: each ECB folded into one conv3x3 on every step):
`python -m benchmarks.train_step [--rounds 3] [--steps 10] [--threads 1]`.

A step is forward, L1 loss, backward and Adam on a batch of aligned LR/HR crops of the training
photos (data/photos, `make data`), at the shapes of the ECBSR runs in training/in_progress
(batch 16, LR patch 64). The two forms run interleaved, round after round, on the same batches
and the same starting weights, so a noisy neighbour hits both alike; the table gives the median
time per step and the speed-up. Writes benchmarks/results/train-step.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.publish import RESULTS, ROOT
from edgesr.atomic import write_bytes_atomic
from edgesr.bench.cpu import detect_cpu
from edgesr.data import load_pairs, random_batch
from edgesr.family import get_family

NAME = "train-step"
CASES = (("ecbsr", "M4C16", 4), ("ecbsr", "M4C16", 2))


def _step_seconds(graph: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: list) -> float:
    """Mean wall time of one training step over the batches."""
    start = time.perf_counter()
    for lr, hr in batches:
        optimizer.zero_grad(set_to_none=True)
        F.l1_loss(graph(lr), hr).backward()
        optimizer.step()
    return (time.perf_counter() - start) / len(batches)


def measure_case(model: str, variant: str, scale: int, data: Path, rounds: int, steps: int, batch: int,
                 patch: int) -> dict:
    """Median ms per step of both forms, interleaved, on photo crops."""
    family = get_family(model)
    config = family.config(variant, scale)
    pairs = load_pairs(data, scale, config.colors, min_lr_side=patch)
    rng = np.random.default_rng(0)
    batches = [tuple(torch.from_numpy(a * config.pixel_range) for a in random_batch(pairs, batch, patch, scale, rng))
               for _ in range(steps)]
    torch.manual_seed(0)
    branches = family.training_graph(config).train()
    folded_owner = copy.deepcopy(branches)
    forms = {"training graph (branches)": (branches, torch.optim.Adam(branches.parameters(), 1e-4)),
             "training step graph": (family.training_step_graph(folded_owner),
                                     torch.optim.Adam(folded_owner.parameters(), 1e-4))}
    times: dict[str, list[float]] = {name: [] for name in forms}
    for name, (graph, optimizer) in forms.items():  # warm-up: allocator, oneDNN kernels
        _step_seconds(graph, optimizer, batches[:2])
    for round_ in range(1, rounds + 1):
        for name, (graph, optimizer) in forms.items():
            times[name].append(_step_seconds(graph, optimizer, batches) * 1000)
        print(f"round {round_}/{rounds}  {model} {variant} x{scale}  "
              + "  ".join(f"{n}: {t[-1]:.1f} ms" for n, t in times.items()), file=sys.stderr, flush=True)
    base, fast = (statistics.median(t) for t in times.values())
    return {"model": model, "variant": variant, "scale": scale, "batch": batch, "lr_patch": patch,
            "ms_per_step": {n: statistics.median(t) for n, t in times.items()}, "runs_ms": times,
            "speedup": base / fast}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="training steps per form per round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "photos")
    args = parser.parse_args()
    if args.rounds < 1 or args.steps < 1 or args.threads < 1:
        sys.exit("train_step: --rounds, --steps and --threads must be >= 1")
    if not args.data.is_dir():
        sys.exit(f"train_step: {args.data} is missing: run `make data` (Debian's wallpaper photos) first")
    torch.set_num_threads(args.threads)
    rows = [measure_case(m, v, s, args.data, args.rounds, args.steps, batch=16, patch=64) for m, v, s in CASES]
    cpu = detect_cpu()
    lines = [f"One training step (forward, L1, backward, Adam), batch 16, LR patch 64, {args.threads} thread(s), "
             f"{args.rounds} interleaved rounds of {args.steps} steps (median), on {cpu.model}", "",
             "| model | training graph (branches) ms | training step graph ms | speed-up |", "|---|---:|---:|---:|"]
    for row in rows:
        base, fast = row["ms_per_step"].values()
        lines.append(f"| {row['model']}-{row['variant']} x{row['scale']} | {base:.1f} | {fast:.1f} | "
                     f"{row['speedup']:.2f}x |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(RESULTS / f"{NAME}.json", json.dumps({"cpu": cpu.model, "threads": args.threads,
                                                             "rows": rows}, indent=2).encode(), force=True)
    write_bytes_atomic(RESULTS / f"{NAME}.md", (table + "\n").encode(), force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
