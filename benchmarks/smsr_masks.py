"""SMSR mask agreement of exported TFLite files: `python -m benchmarks.smsr_masks`.

SMSR's spatial masks are argmax decisions, so any change of the logits (float re-association,
fp16 weights, int8 quantization) can flip a mask pixel whose two logits nearly tie, and a
flipped pixel changes the output around it by far more than the rounding that caused it.
This converts the Keras twin with every SMM's mask as an extra output, at each precision,
runs it on the `edgesr verify` inputs (random + photo crops) and counts the mask pixels that
differ from the fp32 PyTorch deploy graph; alongside, the output max-abs error vs the training
graph, and vs the deploy graph forced to use the file's own masks (the error that remains
once the decisions agree). Writes benchmarks/results/smsr-masks.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from edgesr.atomic import write_bytes_atomic
from edgesr.check import DEFAULT_SIZES, check_output
from edgesr.families.smsr.model import hard_spatial_mask
from edgesr.images import calibration_crops, verification_inputs
from edgesr.model import prepare

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "smsr-masks"


def torch_masks(deploy, x: torch.Tensor) -> list[np.ndarray]:
    """Every SMM's hard spatial mask, (H, W) on the even-padded grid, from the torch graph."""
    masks, hooks = [], [smm.spa_mask.register_forward_hook(
        lambda _m, _i, out: masks.append(hard_spatial_mask(out)[0, 0].numpy())) for smm in deploy.body]
    with torch.no_grad():
        deploy(x)
    for hook in hooks:
        hook.remove()
    return masks


def with_forced_masks(deploy, x: torch.Tensor, masks: list[np.ndarray]) -> np.ndarray:
    """The torch deploy graph's output when every SMM uses the given masks (its mask logits are
    replaced by -1/+1 in a forward hook): the error left once the decisions agree."""
    hooks = []
    for smm, mask in zip(deploy.body, masks, strict=True):
        forced = torch.from_numpy(mask).view(1, 1, *mask.shape) * 2 - 1
        hooks.append(smm.spa_mask.register_forward_hook(
            lambda _m, _i, _out, forced=forced: torch.cat([torch.zeros_like(forced), forced], 1)))
    with torch.no_grad():
        out = deploy(x).numpy()
    for hook in hooks:
        hook.remove()
    return out


def tflite_outputs(model_bytes: bytes, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """(SR output NCHW, masks (H, W) in SMM order) of a with_masks TFLite model, dequantized."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=model_bytes, num_threads=1).get_signature_runner()
    detail = runner.get_input_details()["lr"]
    nhwc = x.transpose(0, 2, 3, 1)
    if detail["dtype"] != np.float32:
        scale, zero = detail["quantization"]
        nhwc = np.clip(np.round(nhwc / scale + zero), -128, 127)
    outputs, details = runner(lr=nhwc.astype(detail["dtype"])), runner.get_output_details()
    values = []
    for name in sorted(outputs, key=lambda n: int(n.rsplit("_", 1)[1])):  # output_0 = SR, then the masks
        y = outputs[name].astype(np.float32)
        if details[name]["dtype"] != np.float32:
            scale, zero = details[name]["quantization"]
            y = (y - zero) * scale
        values.append(y)
    return values[0].transpose(0, 3, 1, 2), [np.round(m[0, ..., 0]) for m in values[1:]]


def run(model: str, variant: str | None, scale: int | None, precisions: list[str]) -> dict:
    from edgesr.export.tflite import convert_keras
    from edgesr.families.smsr.keras import build_keras_smsr

    prepared = prepare(model, variant, scale)
    inputs = verification_inputs(DEFAULT_SIZES, 3, 255.0)
    rows = []
    for precision in precisions:
        calibration = ([c.transpose(0, 2, 3, 1) for c in calibration_crops(3, 255.0)]
                       if precision == "int8" else None)
        model_bytes = convert_keras(build_keras_smsr(prepared.deploy, with_masks=True), precision, calibration)
        pixels = flipped = 0
        worst = {"photos": 0.0, "random": 0.0, "forced": 0.0, "used": 0.0}
        for label, x in inputs:
            ref_masks = torch_masks(prepared.deploy, torch.from_numpy(x))
            sr, masks = tflite_outputs(model_bytes, x)
            for ref, got in zip(ref_masks, masks, strict=True):
                pixels += ref.size
                flipped += int((ref != got).sum())
            with torch.no_grad():
                ref_sr = prepared.train(torch.from_numpy(x)).numpy()
            subset = "random" if label.startswith("random") else "photos"
            worst[subset] = max(worst[subset], float(np.abs(sr - ref_sr).max()))
            forced = with_forced_masks(prepared.deploy, torch.from_numpy(x), masks)
            worst["forced"] = max(worst["forced"], float(np.abs(sr - forced).max()))
            if precision != "int8":  # the error model, near-tie mask pixels exempt (int8 ranges need a file)
                worst["used"] = max(worst["used"], check_output(prepared.train, x, sr, prepared.deploy, precision).used)
        rows.append({"precision": precision, "mask_pixels": pixels, "flipped": flipped,
                     "agreement": 1 - flipped / pixels, "max_abs_photos": worst["photos"],
                     "max_abs_random": worst["random"], "max_abs_same_masks": worst["forced"],
                     "bound_used": worst["used"] if precision != "int8" else None})
        print(f"[{NAME}] {precision}: {flipped} of {pixels} mask pixels flipped", file=sys.stderr, flush=True)
    return {"model": prepared.label, "weights": prepared.weights, "inputs": [label for label, _ in inputs],
            "rows": rows}


def to_markdown(report: dict) -> str:
    lines = ["| TFLite precision | mask pixels (all SMMs, 6 inputs) | flipped vs fp32 torch | agreement | "
             "max-abs vs train, photos | max-abs vs train, random | max-abs vs deploy with the file's masks | "
             "error-model bound used |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        used = "-" if r.get("bound_used") is None else f"{100 * r['bound_used']:.0f} %"
        lines.append(f"| {r['precision']} | {r['mask_pixels']:,} | {r['flipped']} | {100 * r['agreement']:.3f} % | "
                     f"{r['max_abs_photos']:.3g} | {r['max_abs_random']:.3g} | {r['max_abs_same_masks']:.3g} | "
                     f"{used} |")
    lines.append("")
    lines.append(f"{report['model']}, weights: {report['weights']}; inputs: {', '.join(report['inputs'])} "
                 "(0..255). Masks compared on the even-padded grid of every SMM. Error-model bound used: the worst "
                 "share of the per-element bound (edgesr/error_model.py; near-tie masks flipped and allowed); int8 "
                 "is not bounded (its near ties are too many to flip).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant")
    parser.add_argument("--scale", type=int)
    parser.add_argument("--precision", nargs="+", default=["fp32", "fp16", "int8"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report = run("smsr", args.variant, args.scale, args.precision)
    table = to_markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.out / f"{NAME}.json", json.dumps(report, indent=2).encode(), force=True)
    write_bytes_atomic(args.out / f"{NAME}.md", f"## SMSR mask agreement of TFLite files\n\n{table}\n".encode(),
                       force=True)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
