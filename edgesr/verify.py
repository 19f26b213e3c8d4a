"""`verify`: the reference graph, the deployable in PyTorch and every exported format and
precision, run on the same inputs and checked pair by pair within the rounding-error model."""

from __future__ import annotations

from collections.abc import Callable

from edgesr.check import Check, Pair, Subject, check_pairs, collect
from edgesr.export.exporter import (
    FORMATS,
    export_to_scratch,
    file_delegation,
    graph_checks,
    graph_form,
    installed_formats,
    reference_subject,
    scratch_folder,
    stored_form,
)
from edgesr.images import verification_inputs
from edgesr.model import Prepared
from edgesr.model_files import open_model
from edgesr.runners import TorchGraph


def precisions_to_check(prepared: Prepared, asked: list[str] | None) -> list[str]:
    """The asked precisions, or the family's default set, limited to what it can export."""
    family = prepared.family
    chosen = asked or list(family.verify_precisions or family.export_precisions)
    return [p for p in chosen if p in family.export_precisions]


def verify(prepared: Prepared, precisions: list[str], sizes: list[tuple[int, int]],
           progress: Callable[[str], None] = lambda _: None, int8_form: str = "auto",
           delegation: dict[str, str] | None = None) -> list[Check]:
    """Export every format/precision to a scratch folder and compare all graphs; a graph stored in
    another form (int8_form) is also checked in PyTorch at fp32, where its math must be exact.
    `delegation`, when given, receives each .tflite/.pte file's XNNPACK summary by candidate name.
    Formats whose extra is not installed are left out."""
    io, deployable, family = prepared.io, prepared.deployable, prepared.family
    inputs = verification_inputs(sizes, io.colors, io.pixel_range)
    ref_name, ref = reference_subject(prepared)
    subjects: dict[str, Subject] = {ref_name: ref}
    pairs: list[Pair] = []
    deploy_model = family.expectation(ref.model, deployable, "fp32", None)
    if ref_name != "deploy":
        subjects["deploy"] = Subject(deployable.torch_runner, deploy_model)
        pairs.append(Pair(ref_name, "deploy", "fp32"))
    for name, module in family.extra_graphs(deployable).items():  # e.g. SMSR's sparse path
        subjects[name] = Subject(lambda module=module: TorchGraph(module), deploy_model)
        pairs += [Pair(ref_name, name, "fp32")] + ([Pair("deploy", name, "fp32")] if ref_name != "deploy" else [])
    graph_rows: list[Check] = []
    with scratch_folder() as scratch:
        from pathlib import Path

        for fmt, precision in [(f, p) for f in installed_formats() for p in precisions if p in FORMATS[f]]:
            name = f"{fmt}-{precision}"
            progress(f"exporting {name}")
            stored = stored_form(prepared, fmt, precision, int8_form)
            form = stored.deployable
            if form is not deployable:
                name_form = "torch-" + next(graph_form(spec, precision) for spec in form.graphs.values())
                if name_form not in subjects:
                    subjects[name_form] = Subject(form.torch_runner, family.expectation(ref.model, form, "fp32", None))
                    pairs.append(Pair(ref_name, name_form, "fp32"))
            path, files = export_to_scratch(stored, fmt, precision, Path(scratch), progress)
            if delegation is not None:
                for graph, file in files.items():
                    found = file_delegation(file)
                    if found is not None:
                        delegation[name if form.single else f"{name} {graph}"] = found.format()
            if not form.single:
                graph_rows += graph_checks(form, files, fmt, precision, sizes, skip_fixed=precision != "fp32")
            subjects[name] = Subject(lambda path=path: open_model(path),
                                     family.expectation(ref.model, form, precision, files))
            pairs.append(Pair(ref_name, name, precision))
            if ref_name != "deploy" and precision == "fp32":
                pairs.append(Pair("deploy", name, precision))
        runs = collect(subjects, inputs, progress)
    return graph_rows + check_pairs(runs, pairs, io.pixel_range)
