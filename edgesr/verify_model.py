"""`edgesr verify`: training graph vs deploy graph vs ONNX vs TFLite on the same inputs."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from edgesr.images import verification_inputs
from edgesr.pipeline import PreparedModel
from edgesr.runtimes import TorchGraph, open_model_file
from edgesr.verify import Check, Pair, check_pairs, collect_outputs, pairs_for


def verify_prepared(prepared: PreparedModel, precisions: list[str], sizes: list[tuple[int, int]],
                    progress: Callable[[str], None] = lambda _: None) -> list[Check]:
    """Export every format/precision to a scratch folder and compare all graphs."""
    from export.pipeline import write_model_file

    cfg = prepared.config
    inputs = verification_inputs(sizes, cfg.colors, cfg.pixel_range)
    graphs: dict = {}
    if prepared.train is not None:
        graphs["train"] = lambda: TorchGraph(prepared.train)
    graphs["deploy"] = lambda: TorchGraph(prepared.deploy)
    ref = prepared.reference[0]
    pairs = [] if ref == "deploy" else [Pair("train", "deploy", "fp32")]
    extra = prepared.spec.extra_graphs(prepared.deploy) if prepared.spec.extra_graphs else {}
    for name, module in extra.items():  # e.g. SMSR's sparse path, checked like the deploy graph
        graphs[name] = lambda module=module: TorchGraph(module)
        pairs += [Pair(ref, name, "fp32")] + ([Pair("deploy", name, "fp32")] if ref != "deploy" else [])
    with tempfile.TemporaryDirectory(prefix="edgesr-verify-") as scratch:
        files = [("onnx", "fp32")] + [("tflite", p) for p in precisions]
        for fmt, precision in files:
            if fmt == "onnx" and "fp32" not in precisions:
                continue
            name = f"{fmt}-{precision}"
            path = Path(scratch) / f"model-{precision}.{fmt}"
            progress(f"exporting {name}")
            write_model_file(prepared, fmt, precision, path)
            graphs[name] = lambda path=path: open_model_file(path)
            pairs += pairs_for(ref, name, precision)
            if ref != "deploy" and precision == "fp32":
                pairs += pairs_for("deploy", name, precision)
        outputs = collect_outputs(graphs, inputs, progress)
    return check_pairs(outputs, [label for label, _ in inputs], pairs, cfg.pixel_range)
