"""Training throughput on the host CPU: one process vs two torchrun ranks (DDP, gloo):
`python -m benchmarks.ddp_speed [--rounds 3] [--iters 100]`.

Each configuration trains ECBSR-M4C16 x4 with the recipe's shape (global batch 16, LR patch 48,
cosine, EMA) on the training photos (data/photos, `make data`) for --iters iterations; the rate
is the one edgesr logs over the iterations after the first 50 (warm-up excluded). Configurations
run interleaved, round after round, so a noisy neighbour hits them alike; the table gives the
median rate and its ratio to one process with one thread. Writes benchmarks/results/ddp-speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from edgesr.atomic import write_bytes_atomic
from edgesr.bench.cpu import detect_cpu

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NAME = "ddp-speed"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
CONFIGS = {  # name: (launcher prefix, OMP threads per process)
    "1 process, 1 thread": ([], 1),
    "1 process, 2 threads": ([], 2),
    "torchrun 2 ranks x 1 thread": ([*TORCHRUN, "--nproc-per-node=2"], 1),
}
_RATE = re.compile(r"(\d+(?:\.\d+)?) it/s")


def train_rate(launcher: list[str], threads: int, data: Path, iters: int, workdir: Path) -> float:
    """Iterations per second logged for iterations 51..iters of one run."""
    entry = ["-m", "edgesr"] if launcher else [sys.executable, "-m", "edgesr"]
    command = [*launcher, *entry, "train", "--model", "ecbsr", "--variant", "M4C16", "--scale", "4", "--data",
               str(data), "--iters", str(iters), "--batch", "16", "--patch", "48", "--save-every", str(iters + 1),
               "-o", str(workdir / "speed.pt"), "--force"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if run.returncode:
        sys.exit(f"ddp_speed: training failed: {run.stderr.strip().splitlines()[-1:]}")
    rates = _RATE.findall(run.stderr)
    if not rates:
        sys.exit("ddp_speed: no rate in the training log")
    return float(rates[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=100, help="iterations per run (> 50; the rate is after 50)")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "photos")
    args = parser.parse_args()
    if args.iters <= 50 or args.rounds < 1:
        sys.exit("ddp_speed: --iters must be > 50 and --rounds >= 1")
    if not args.data.is_dir():
        sys.exit(f"ddp_speed: {args.data} is missing: run `make data` (Debian's wallpaper photos) first")
    rates: dict[str, list[float]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(1, args.rounds + 1):
            for name, (launcher, threads) in CONFIGS.items():
                rate = train_rate(launcher, threads, args.data, args.iters, Path(tmp))
                rates[name].append(rate)
                print(f"round {round_}/{args.rounds}  {name:<28} {rate:6.2f} it/s", file=sys.stderr, flush=True)
    base = statistics.median(rates["1 process, 1 thread"])
    rows = [{"config": name, "it_per_s": statistics.median(r), "runs": r, "vs_1_process_1_thread":
             statistics.median(r) / base} for name, r in rates.items()]
    cpu = detect_cpu()
    lines = [f"ECBSR-M4C16 x4, global batch 16, LR patch 48, {args.iters} iterations per run "
             f"({args.rounds} interleaved rounds, median), on {cpu.model}, {cpu.logical_cores} logical CPUs", "",
             "| configuration | it/s | vs 1 process, 1 thread |", "|---|---:|---:|"]
    lines += [f"| {r['config']} | {r['it_per_s']:.2f} | {r['vs_1_process_1_thread']:.2f}x |" for r in rows]
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"model": "ecbsr M4C16 x4", "batch": 16, "lr_patch": 48, "iters": args.iters, "rounds": args.rounds,
               "cpu": cpu.to_dict(), "rows": rows}
    write_bytes_atomic(RESULTS / f"{NAME}.json", json.dumps(payload, indent=2).encode(), force=True)
    write_bytes_atomic(RESULTS / f"{NAME}.md", (table + "\n").encode(), force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
