"""Quality of the checkpoints edgesr ships: `python -m benchmarks.quality` (or `make quality`).

For each built-in checkpoint, PSNR/SSIM on the Y channel (the default protocol, EDSR's: see
edgesr/protocol.py) on the held-out photos (scikit-image's bundled ones, never used for training), for the training
graph, the deploy graph and every exported ONNX and TFLite file (each parity-checked when exported), next to
bicubic on the same LR. For ClassSR the training graph is the hard-routed one, tile by tile, and
the deploy and exported forms are routed bundles (ONNX Runtime / LiteRT). Writes
benchmarks/results/quality.{json,md} and refreshes the table between <!-- quality:shipped -->
markers in README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.publish import RESULTS, ROOT, refresh_readme
from edgesr.atomic import write_bytes_atomic
from edgesr.errors import ToolError
from edgesr.evaluate import evaluate_folder, mean_scores
from edgesr.export.exporter import export
from edgesr.images import write_heldout_photos
from edgesr.model import Prepared, prepare
from edgesr.model_files import open_model
from edgesr.protocol import DEFAULT_PROTOCOL, get_protocol
from edgesr.runners import Graph

SHIPPED = (("ecbsr", "M4C16", 4), ("ecbsr", "M4C16", 2), ("classsr", "ECB-8-16-24", 4),
           ("classsr", "FSRCNN-16-36-56-skip", 4), ("smsr", "C16-K2", 4), ("splitsr", "A0.25-G8B2-H1-C16-BIC", 4))
FILES = (("onnx", "fp32"), ("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8"))


def _progress(message: str) -> None:
    print(f"[quality {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _graphs(prepared: Prepared, scratch: Path, refused: list[dict]) -> dict[str, Graph]:
    """The training graph (the family's reference), the deploy form and every verified export; an
    export refused by its checks (parity, or a file its runtime cannot run) writes no file and is
    listed in `refused` with the reason."""
    family, deployable = prepared.family, prepared.deployable
    graphs: dict[str, Graph] = {"train": family.reference(prepared.train, deployable),
                                "deploy": deployable.torch_runner()}
    files = [(fmt, p) for fmt, p in FILES if p in family.export_precisions]
    for fmt, precision in files:
        _progress(f"exporting {prepared.label} {fmt} {precision} (parity-checked)")
        path = scratch / f"{family.name}-x{prepared.config.scale}-{fmt}-{precision}"
        if deployable.single:
            path = path.with_suffix(f".{fmt}")
        try:
            graphs[f"{fmt}-{precision}"] = open_model(export(prepared, fmt, precision, path, force=True).path)
        except ToolError as exc:  # ParityError included
            refused.append({"model": prepared.label, "graph": f"{fmt}-{precision}", "reason": str(exc)})
    return graphs


def measure(models=SHIPPED) -> dict:
    """Mean and per-image scores of every graph of every shipped checkpoint."""
    rows, refused = [], []
    with tempfile.TemporaryDirectory(prefix="edgesr-quality-") as tmp:
        photos = Path(tmp) / "photos"
        write_heldout_photos(photos)
        for model, variant, scale in models:
            prepared = prepare(model, variant, scale)
            if not prepared.pretrained:
                raise SystemExit(f"no built-in checkpoint for {prepared.label}: nothing to measure")
            for name, graph in _graphs(prepared, Path(tmp), refused).items():
                cfg = prepared.config
                scores = evaluate_folder(graph, photos, cfg.scale, cfg.colors, cfg.pixel_range, _progress).images
                summary = getattr(graph, "summary", None)  # routed bundles: class shares and MACs
                rows.append({"model": model, "variant": variant, "scale": scale,
                             "weights": prepared.weights.replace(f"{ROOT}/", ""),
                             "graph": name, "images": [s.to_dict() for s in scores], "mean": mean_scores(scores),
                             "worst_gain": min(s.psnr_y - s.bicubic_psnr_y for s in scores),
                             "routing": summary() if summary else None})
    protocol = get_protocol(DEFAULT_PROTOCOL)
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "data": "scikit-image photos (held out)",
            "classsr_branches": classsr_branches(models),
            "protocol": f"protocol {protocol.name} ({protocol.summary}), border crop = scale, 8-bit output; "
                        "SSIM on MATLAB's 8-bit Y; RGB PSNR alongside", "rows": rows, "refused": refused}


def classsr_branches(models=SHIPPED) -> list[dict]:
    """Each shipped ClassSR's branches on the tiles routed to them (interiors), vs bicubic
    (edgesr/families/classsr/branch_quality.py)."""
    from edgesr.families.classsr.branch_quality import branch_gains
    from edgesr.images import PHOTOS, photo

    rows = []
    for model, variant, scale in models:
        if model == "classsr":
            gains = branch_gains(prepare(model, variant, scale).train, [photo(name) for name in PHOTOS])
            rows.append({"model": f"{model}-{variant} x{scale}", "branches": [g.to_dict() for g in gains]})
    return rows


def to_markdown(result: dict) -> str:
    """The README table: one row per model and graph, with the loss vs the model's first graph
    (the training graph)."""
    lines = ["| model | graph | PSNR-Y dB | SSIM-Y | PSNR-RGB dB | bicubic PSNR-Y | gain over bicubic | "
             "worst image | vs first graph |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    first: dict[tuple, float] = {}
    for r in result["rows"]:
        first.setdefault((r["model"], r["variant"], r["scale"]), r["mean"]["psnr_y"])
    for r in result["rows"]:
        m = r["mean"]
        delta = m["psnr_y"] - first[(r["model"], r["variant"], r["scale"])]
        lines.append(f"| {r['model']}-{r['variant']} x{r['scale']} | {r['graph']} | {m['psnr_y']:.3f} | "
                     f"{m['ssim_y']:.4f} | {m['psnr_rgb']:.3f} | {m['bicubic_psnr_y']:.3f} | "
                     f"{m['psnr_y'] - m['bicubic_psnr_y']:+.3f} | {r['worst_gain']:+.3f} | {delta:+.3f} |")
    for r in result.get("refused", []):
        lines += ["", f"{r['model']} {r['graph']}: no file, export refused: {r['reason']}"]
    names = ", ".join(s["name"] for s in result["rows"][0]["images"])
    routed = [r for r in result["rows"] if r.get("routing") and r["graph"] == "deploy"]
    for r in routed:
        lines += ["", f"{r['model']}-{r['variant']} x{r['scale']} routing on these photos: {r['routing']}"]
    for row in result.get("classsr_branches", []):
        parts = ", ".join(f"{b['name']} {b['tiles']} tiles {b['gain_db']:+.3f} dB" for b in row["branches"])
        lines += ["", f"{row['model']} branches on the tiles routed to them (interiors, vs bicubic): {parts}"]
    lines += ["", f"Measured {result['created'][:10]} with `python -m benchmarks.quality` on the held-out photos "
              f"({names}): {result['protocol']}; mean over the images; worst image: the smallest per-image "
              "gain over bicubic."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--render-only", action="store_true", help="re-render from the saved JSON")
    args = parser.parse_args(argv)
    path = RESULTS / "quality.json"
    result = json.loads(path.read_text()) if args.render_only else measure()
    if not args.render_only:
        write_bytes_atomic(path, json.dumps(result, indent=2).encode(), force=True)
    table = to_markdown(result)
    print(table)
    write_bytes_atomic(RESULTS / "quality.md", (table + "\n").encode(), force=True)
    where = "README.md and " if refresh_readme("shipped", table, kind="quality") else ""
    print(f"wrote {where}benchmarks/results/quality.{{json,md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
