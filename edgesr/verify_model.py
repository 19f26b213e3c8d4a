"""`edgesr verify`: training graph vs deploy graph vs ONNX vs TFLite on the same inputs."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from edgesr.images import verification_inputs
from edgesr.pipeline import PreparedModel
from edgesr.runtimes import TorchGraph, open_model_file
from edgesr.verify import Check, Pair, Subject, check_pairs, collect, expectation, graph_model


def verify_prepared(prepared: PreparedModel, precisions: list[str], sizes: list[tuple[int, int]],
                    progress: Callable[[str], None] = lambda _: None) -> list[Check]:
    """Export every format/precision to a scratch folder and compare all graphs."""
    from edgesr.export.pipeline import write_model_file

    cfg = prepared.config
    inputs = verification_inputs(sizes, cfg.colors, cfg.pixel_range)
    ref, ref_module = prepared.reference
    ref_model = graph_model(ref_module)
    deploy_model = expectation(ref_model, prepared.deploy) if ref != "deploy" else ref_model
    subjects: dict[str, Subject] = {}
    if prepared.train is not None:
        subjects["train"] = Subject(lambda: TorchGraph(prepared.train), ref_model)
    subjects["deploy"] = Subject(lambda: TorchGraph(prepared.deploy), deploy_model)
    pairs = [] if ref == "deploy" else [Pair("train", "deploy", "fp32")]
    extra = prepared.spec.extra_graphs(prepared.deploy) if prepared.spec.extra_graphs else {}
    for name, module in extra.items():  # e.g. SMSR's sparse path: the deploy graph's math, summed otherwise
        subjects[name] = Subject(lambda module=module: TorchGraph(module), deploy_model)
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
            subjects[name] = Subject(lambda path=path: open_model_file(path),
                                     expectation(ref_model, prepared.deploy, precision, path, cfg.colors,
                                                 cfg.pixel_range))
            pairs.append(Pair(ref, name, precision))
            if ref != "deploy" and precision == "fp32":
                pairs.append(Pair("deploy", name, precision))
        runs = collect(subjects, inputs, progress)
    return check_pairs(runs, pairs, cfg.pixel_range)
