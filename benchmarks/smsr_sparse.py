"""SMSR sparse path vs dense-masked graph on the host CPU: `python -m benchmarks.smsr_sparse`.

One SMSR (default C64-K5 x4, seeded weights) is set to each fraction of sparse channels per
layer (default 0.25, 0.5, 0.75; ch_mask logits set, dense/sparse chosen at random per channel)
and each target spatial density: its mask branches are shifted (ConvTranspose bias of logit 1)
so that each SMM masks that fraction of the pixels of the benchmark's photo crop (the density
each SMM actually had is measured and reported). PyTorch runs with 1 thread:
- dense-masked: SMSRDeploy, the exported graph's form (every conv at every pixel, gated),
  weights and input channels-last (about 10% faster than NCHW with oneDNN here);
- sparse: SMSRSparse, gather -> GEMM -> scatter at the masked pixels for every SMM;
- auto: SMSRSparse with a crossover density: an SMM whose mask is denser runs dense-masked.
The three paths alternate run by run (drift hits all alike); latency = median. Every path's
output is compared with the dense-masked one (max-abs on 0..255). MACs per LR pixel: dense
from edgesr.profile; sparse = dense minus the products skipped at the measured densities.
Writes benchmarks/results/smsr-sparse.{json,md}. With --weights CKPT, times that checkpoint
with its own learned masks instead (-> smsr-sparse-checkpoint.{json,md}).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edgesr.atomic import write_bytes_atomic
from edgesr.bench import report as reports
from edgesr.bench.host import host_device
from edgesr.check import check_output
from edgesr.families.smsr.model import SMSR, parse_variant
from edgesr.families.smsr.sparse import SMSRSparse, sparse_macs_saved_per_pixel
from edgesr.images import photo_crop
from edgesr.model import prepare
from edgesr.profile import macs_per_lr_pixel

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NAME = "smsr-sparse"
DENSITIES = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
PATHS = ("dense-masked", "sparse", "auto")


def set_sparse_channels(model: SMSR, fraction: float, seed: int = 0) -> None:
    """Make `fraction` of the channels of every SMB layer sparse (random choice, seeded)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for smm in model.body:
            c = smm.body.ch_mask.shape[1]
            sparse = torch.zeros(c, smm.body.ch_mask.shape[2], dtype=torch.bool)
            for layer in range(sparse.shape[1]):
                sparse[torch.randperm(c, generator=g)[:round(fraction * c)], layer] = True
            smm.body.ch_mask.copy_(torch.stack([(~sparse).float(), sparse.float()], -1)[None])


def set_spatial_density(model: SMSR, density: float, x: torch.Tensor) -> None:
    """Shift each SMM's logit-1 bias so that it masks `density` of the pixels of x (SMMs in
    order, each seeing the previous ones' new masks)."""
    with torch.no_grad():
        fea = model.head(model.sub_mean(x))
        for smm in model.body:
            bias = smm.spa_mask[5].bias
            if density >= 1.0 or density <= 0.0:
                bias[1] = bias[0] + (1e4 if density >= 1.0 else -1e4)
            else:
                logits = smm.spa_mask(fea)
                gap = (logits[:, 0] - logits[:, 1]).flatten()  # masked where bias shift > gap
                bias[1] += torch.quantile(gap.double(), density).float()
            fea = smm(fea, 1.0)[0]


def _time_paths(graphs: dict, x: torch.Tensor, warmup: int, runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in graphs}
    with torch.inference_mode():
        for _ in range(warmup):
            for graph in graphs.values():
                graph(x)
        for r in range(runs):
            names = list(graphs)[r % len(graphs):] + list(graphs)[:r % len(graphs)]
            for name in names:
                start = time.perf_counter()
                graphs[name](x)
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def measure(deploy, x: torch.Tensor, crossover: float, warmup: int, runs: int) -> dict:
    """Time dense-masked, sparse and auto on x; densities, MACs and errors vs dense-masked."""
    deploy = deploy.to(memory_format=torch.channels_last)  # oneDNN's faster layout, for every path
    sparse, auto = SMSRSparse(deploy), SMSRSparse(deploy, crossover)
    with torch.inference_mode():
        ref = deploy(x)
        outputs = {"sparse": sparse(x), "auto": auto(x)}
    errors = {name: float((y - ref).abs().max()) for name, y in outputs.items()}
    used = {name: check_output(deploy, x.numpy(), y).used for name, y in outputs.items()}
    measured = sparse.densities
    times = _time_paths({"dense-masked": deploy, "sparse": sparse, "auto": auto}, x, warmup, runs)
    dense_macs = macs_per_lr_pixel(deploy, 3)
    saved = sparse_macs_saved_per_pixel(deploy, measured)
    ms = {name: statistics.median(t) for name, t in times.items()}
    return {"measured_density": statistics.fmean(measured), "per_smm_density": measured,
            "macs_dense": dense_macs, "macs_sparse": dense_macs - saved, "ms": ms, "runs_ms": times,
            "max_abs_vs_dense": errors, "bound_used_vs_dense": used,
            "speedup": {name: ms["dense-masked"] / ms[name] for name in ("sparse", "auto")}}


def _settings(variant: str, scale: int, size: tuple[int, int], crossover: float, warmup: int, runs: int,
              weights: str) -> dict:
    return {"variant": variant, "scale": scale, "input": f"{size[0]}x{size[1]}", "threads": 1, "crossover": crossover,
            "warmup": warmup, "runs": runs, "weights": weights,
            "load_before": " / ".join(f"{v:.2f}" for v in os.getloadavg())}


def _progress(row: dict) -> None:
    print(f"[{NAME}] sparse channels {row['sparse_channels']:.2f}, density {row['target_density']} "
          f"(measured {row['measured_density']:.3f}): " + ", ".join(f"{k} {v:.1f} ms" for k, v in row["ms"].items()),
          file=sys.stderr, flush=True)


def _photo(size: tuple[int, int], seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(photo_crop("coffee", *size, 3, 255.0, rng)).contiguous(memory_format=torch.channels_last)


def run(variant: str, scale: int, size: tuple[int, int], channel_fractions: tuple[float, ...], crossover: float,
        densities: tuple[float, ...], warmup: int, runs: int, seed: int) -> dict:
    """The synthetic sweep: every (sparse channel fraction, spatial density) pair."""
    torch.set_num_threads(1)
    x = _photo(size, seed)
    settings = _settings(variant, scale, size, crossover, warmup, runs, f"random init (seed {seed}), masks set per row")
    report = reports.new_report(host_device(), settings)
    rows = []
    for channel_fraction, target in ((c, d) for c in channel_fractions for d in densities):
        torch.manual_seed(seed)
        model = SMSR(parse_variant(variant, scale)).eval()
        set_sparse_channels(model, channel_fraction, seed)
        set_spatial_density(model, target, x)
        rows.append({"sparse_channels": channel_fraction, "target_density": target,
                     **measure(model.reparameterize(), x, crossover, warmup, runs)})
        _progress(rows[-1])
    settings["load_after"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    report["rows"] = rows
    return report


def run_checkpoint(weights: Path, size: tuple[int, int], crossover: float, warmup: int, runs: int, seed: int) -> dict:
    """One checkpoint with its own learned masks (nothing set)."""
    torch.set_num_threads(1)
    prepared = prepare("smsr", weights=weights)
    cfg, deploy = prepared.config, prepared.deploy
    settings = _settings(cfg.variant, cfg.scale, size, crossover, warmup, runs, str(weights))
    report = reports.new_report(host_device(), settings)
    channels = statistics.fmean(float(smm.sparse.float().mean()) for smm in deploy.body)
    report["rows"] = [{"sparse_channels": channels, "target_density": "own",
                       **measure(deploy, _photo(size, seed), crossover, warmup, runs)}]
    _progress(report["rows"][0])
    settings["load_after"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    return report


def to_markdown(report: dict) -> str:
    s, device = report["settings"], report["device"]
    lines = ["| sparse channels | spatial density (target / measured) | MACs/LR px dense-masked | MACs/LR px sparse | "
             "dense-masked ms | sparse ms | vs dense | auto ms | vs dense | max-abs sparse vs dense |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        target = r["target_density"] if isinstance(r["target_density"], str) else f"{r['target_density']:g}"
        lines.append(f"| {r['sparse_channels']:.2g} | {target} / {r['measured_density']:.2f} | "
                     f"{r['macs_dense']:,.0f} | {r['macs_sparse']:,.0f} ({r['macs_sparse'] / r['macs_dense']:.2f}) | "
                     f"{r['ms']['dense-masked']:.0f} | {r['ms']['sparse']:.0f} | {r['speedup']['sparse']:.2f}x | "
                     f"{r['ms']['auto']:.0f} | {r['speedup']['auto']:.2f}x | {r['max_abs_vs_dense']['sparse']:.2g} |")
    lines.append("")
    lines.append(f"Measured {report['created'][:10]} on {device['name']} ({device['cpu']['logical_cores']} cores, "
                 f"{device['cpu']['simd']}); PyTorch {report['versions']['torch']}, 1 thread, in one process; "
                 f"smsr {s['variant']} x{s['scale']}, {s['input']} LR photo crop; 'sparse channels' = fraction "
                 f"of each SMB layer's channels that are sparse; {s['runs']} timed runs per path (paths alternate), "
                 "median. "
                 f"'auto' runs an SMM dense-masked when its mask density is >= {s['crossover']:g}. "
                 f"Load average before/after: {s['load_before']} -> {s['load_after']} (shared machine). "
                 f"Weights: {s['weights']}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="C64-K5")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--input", default="90x160", help="LR size HxW (default: 90x160)")
    parser.add_argument("--channels-sparse", default="0.25,0.5,0.75", help="sparse channel fractions")
    parser.add_argument("--crossover", type=float, default=0.3, help="auto: dense-masked from this density")
    parser.add_argument("--densities", default=",".join(map(str, DENSITIES)))
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", type=Path, help="time this checkpoint with its own masks instead of the sweep")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    h, w = (int(v) for v in args.input.split("x"))
    if args.weights:
        report, name = run_checkpoint(args.weights, (h, w), args.crossover, args.warmup, args.runs, args.seed), \
            f"{NAME}-checkpoint"
    else:
        densities = tuple(float(d) for d in args.densities.split(","))
        fractions = tuple(float(c) for c in args.channels_sparse.split(","))
        report, name = run(args.variant, args.scale, (h, w), fractions, args.crossover, densities, args.warmup,
                           args.runs, args.seed), NAME
    args.out.mkdir(parents=True, exist_ok=True)
    reports.write_outputs(report, args.out / f"{name}.json", None, None, force=True)
    s = report["settings"]
    title = f"SMSR sparse path vs dense-masked, {s['variant']} x{s['scale']}, {s['input']} LR, fp32, 1 thread (PyTorch)"
    table = to_markdown(report)
    write_bytes_atomic(args.out / f"{name}.md", f"## {title}\n\n{table}\n".encode(), force=True)
    print(table)
    print(f"wrote {args.out}/{name}.{{json,md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
