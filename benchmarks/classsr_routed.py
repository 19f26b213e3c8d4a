"""ClassSR routed inference vs its largest branch alone, on the host CPU:
`python -m benchmarks.classsr_routed`.

For each ClassSR family (default: FSRCNN-16-36-56-skip at 360x640 LR, SRResNet-36-52-64 at 120x160
LR; x4), export + verify the bundle to ONNX and TFLite (fp32), then time on a real photo,
per runtime and thread count, in interleaved rounds:
- routed: the whole pipeline (pad, tile, classify all tiles, routed subnets in batches, stitch);
- largest: the same tiling and stitching with every tile through net3 (ClassSR's baseline).
Writes benchmarks/results/classsr-routed.{json,md}.

No trained ClassSR checkpoint ships, and a randomly initialised classifier sends every tile
to one class. Latency depends on the weights only through the class histogram, so the bench
sets a transparent hand-made classifier (`edge_energy_classifier`): it measures the mean
absolute luminance gradient of each tile with the authors' classifier layers and splits at
the 1/3 and 2/3 quantiles of that energy over tiles of the other bundled photos; flat tiles
go to net1, textured ones to net3, as a trained ClassSR tends to. Branch weights are random
(seeded): latencies are real, the SR output is not. `--weights CKPT` uses a real checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgesr.atomic import write_bytes_atomic
from edgesr.bench.cpu import detect_cpu
from edgesr.bench.stats import summarize
from edgesr.export.exporter import export
from edgesr.families.classsr.model import ClassSR
from edgesr.images import PHOTOS, photo, to_model_input
from edgesr.model import Prepared, prepare
from edgesr.model_files import open_model
from edgesr.tiling import Tiling, extract_tiles

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NAME = "classsr-routed"
CASES = (("FSRCNN-16-36-56-skip", "rocket", (360, 640)), ("SRResNet-36-52-64", "chelsea", (120, 160)))
RUNTIMES = {"onnxruntime": "onnx", "tflite": "tflite"}


def photo_input(height: int, width: int, name: str = "rocket") -> np.ndarray:
    """A real photo of exactly height x width as model input (top-left crop, mirror-padded when larger)."""
    rgb = photo(name)
    while rgb.shape[0] < height or rgb.shape[1] < width:
        rgb = np.pad(rgb, ((0, max(0, height - rgb.shape[0])), (0, max(0, width - rgb.shape[1])), (0, 0)),
                     mode="symmetric")
    return to_model_input(rgb[:height, :width], 3, 1.0)


def _energy_features(classifier, tiles: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return classifier.CondNet(tiles).mean(dim=(2, 3))[:, 0]


def edge_energy_classifier(model: ClassSR, calibration: list[np.ndarray], tiling: Tiling = Tiling()) -> None:
    """Set the classifier to route by mean absolute luminance gradient (see the module docstring).
    conv4x4/s4: +-differences of neighbouring pixels of the grey 4x4 patch (48 channels);
    LeakyReLU(0.1) makes lrelu(d) + lrelu(-d) = 0.9 |d|; the 1x1 convs sum them into channel 0
    and pass it on; logits (0, c (E - t1), c (2E - t1 - t2)) pick class 0 / 1 / 2 at E < t1 / < t2 / above."""
    cond = model.classifier.CondNet
    kernels = []
    for axis in (2, 3):
        for i in range(4):
            for j in range(3):
                k = torch.zeros(4, 4)
                a, b = ((j, i), (j + 1, i)) if axis == 2 else ((i, j), (i, j + 1))
                k[a], k[b] = -1.0, 1.0
                kernels += [k, -k]
    with torch.no_grad():
        for layer in cond:
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.zero_()
                layer.bias.zero_()
        cond[0].weight[:len(kernels)] = torch.stack(kernels)[:, None].repeat(1, 3, 1, 1) / 3
        cond[2].weight[0, :len(kernels), 0, 0] = 1 / 0.9 / len(kernels)
        for i in (4, 6, 8):
            cond[i].weight[0, 0, 0, 0] = 1.0
        tiles = np.concatenate([extract_tiles(x, tiling)[0] for x in calibration])
        t1, t2 = np.quantile(_energy_features(model.classifier, torch.from_numpy(tiles)).numpy(), [1 / 3, 2 / 3])
        last = model.classifier.lastOut
        last.weight.zero_()
        c = 100.0 / max(t2 - t1, 1e-6)
        last.weight[1, 0], last.weight[2, 0] = c, 2 * c
        last.bias.copy_(torch.tensor([0.0, -c * t1, -c * (t1 + t2)]))


def with_routing_weights(prepared: Prepared, photo_name: str) -> Prepared:
    """Real checkpoints as they are; fresh weights get the edge-energy classifier, calibrated on
    the bundled photos other than the one benchmarked."""
    if prepared.pretrained:
        return prepared
    others = [to_model_input(photo(p), 3, 1.0) for p in PHOTOS if p != photo_name]
    edge_energy_classifier(prepared.train, others)
    return Prepared(prepared.family, prepared.config, prepared.train, prepared.family.deployable(prepared.train),
                    f"{prepared.weights} branches + edge-energy classifier", False)


def _time(call, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def bench_case(prepared: Prepared, image: np.ndarray, runtimes: list[str], threads: list[int], runs: int,
               rounds: int, workdir: Path, progress) -> list[dict]:
    """Export + verify each runtime's bundle, then time routed vs largest-only in interleaved rounds."""
    rows = []
    for runtime in runtimes:
        folder = workdir / f"{prepared.config.variant}-{runtime}"
        progress(f"exporting and verifying {prepared.label} {runtime} bundle")
        export(prepared, RUNTIMES[runtime], "fp32", folder)
        for n in threads:
            bundle = open_model(folder, threads=n).runner
            result = bundle.route(image)
            bundle.largest_only(image)  # warm-up of the largest branch at its batch shapes
            times: dict[str, list[float]] = {"routed": [], "largest": []}
            for r in range(rounds):
                order = ("routed", "largest") if r % 2 == 0 else ("largest", "routed")
                for kind in order:
                    call = (lambda: bundle.route(image)) if kind == "routed" else (lambda: bundle.largest_only(image))
                    times[kind] += _time(call, max(1, runs // rounds))
            stats = {k: summarize(v).to_dict() for k, v in times.items()}
            rows.append({"variant": prepared.config.variant, "scale": prepared.config.scale,
                         "weights": prepared.weights, "runtime": runtime,
                         "threads": n,
                         "input": list(image.shape), "tiles": len(result.classes),
                         "histogram": dict(zip(bundle.class_names, result.histogram, strict=True)),
                         "macs_spent": result.macs_spent, "macs_largest": result.macs_largest,
                         "routed": stats["routed"], "largest": stats["largest"],
                         "speedup": stats["largest"]["median_ms"] / stats["routed"]["median_ms"]})
            progress(f"{prepared.config.variant} {runtime} t{n}: routed {stats['routed']['median_ms']:.1f} ms, "
                     f"largest {stats['largest']['median_ms']:.1f} ms")
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown table: routed vs largest branch, class shares, MACs."""
    lines = ["| model | LR input | runtime | threads | tiles | classes simple/medium/hard | MACs routed / largest | "
             "routed median ms | largest-branch median ms | speed-up |",
             "|---|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        hist = "/".join(str(v) for v in r["histogram"].values())
        lines.append(f"| classsr-{r['variant']} x{r['scale']} | {r['input'][2]}x{r['input'][3]} | {r['runtime']} | "
                     f"{r['threads']} | "
                     f"{r['tiles']} | {hist} | {r['macs_spent'] / 1e9:.2f} / {r['macs_largest'] / 1e9:.2f} G "
                     f"({100 * r['macs_spent'] / r['macs_largest']:.0f}%) | {r['routed']['median_ms']:.1f} | "
                     f"{r['largest']['median_ms']:.1f} | {r['speedup']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", nargs="+", default=list(RUNTIMES), choices=list(RUNTIMES))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per case and kind (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--only", choices=[v for v, _, _ in CASES], help="one family only")
    parser.add_argument("--weights", type=Path, help="a real ClassSR checkpoint (with --only)")
    parser.add_argument("--out", type=Path, default=RESULTS / NAME, help="output stem (.json and .md)")
    args = parser.parse_args(argv)

    def progress(message: str) -> None:
        print(f"[classsr-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    cpu = detect_cpu()
    load_before = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgesr-classsr-bench-") as tmp:
        for variant, photo_name, (h, w) in CASES:
            if args.only and variant != args.only:
                continue
            image = photo_input(h, w, photo_name)
            prepared = with_routing_weights(prepare("classsr", variant, 4, args.weights), photo_name)
            rows += bench_case(prepared, image, args.runtime, args.threads, args.runs, args.rounds, Path(tmp),
                               progress)
    note = (f"Measured {time.strftime('%Y-%m-%d')} on {cpu.model} ({cpu.logical_cores} cores, shared), load "
            f"{load_before} before, {' / '.join(f'{v:.2f}' for v in os.getloadavg())} after; fp32, {args.runs} "
            f"timed runs per kind over {args.rounds} interleaved rounds, median. Input: scikit-image photo crops "
            "(rocket 360x640, chelsea 120x160), tiles 32 / stride 28, batches of 64 tiles. Weights: "
            f"{'; '.join(sorted({r['weights'].replace(f'{ROOT}/', '') for r in rows}))}.")
    table = format_table(rows)
    print(table)
    print(note)
    payload = {"name": NAME, "cpu": cpu.model, "settings": vars(args) | {"out": str(args.out),
                                                                        "weights": str(args.weights)},
               "rows": rows, "note": note, "mean_speedup": statistics.fmean(r["speedup"] for r in rows)}
    write_bytes_atomic(args.out.with_suffix(".json"), json.dumps(payload, indent=2).encode(), force=True)
    write_bytes_atomic(args.out.with_suffix(".md"), (table + "\n\n" + note + "\n").encode(), force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
