"""Export and verify a ClassSR deploy bundle: a directory holding the classifier and the three
subnets (ONNX or TFLite, fixed tile size, dynamic batch) and manifest.json.

Each graph is checked against its PyTorch module on tiles; the routed whole-image inference
through the exported files is checked against the training graph with hard argmax routing,
tile by tile. The directory is written under a temporary name beside the target and renamed
into place only when every check passed. The classifier is always exported in fp32 (3.8 MMAC
per 32x32 tile: 15% of FSRCNN-56's tile, 0.15% of SRResNet-64's), so an fp16 bundle routes
every tile exactly as the training graph does.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgesr.atomic import atomic_directory, ensure_writable_parent
from edgesr.error_model import FP32_U, Modelled, at_precision, modelled
from edgesr.error_model import PRECISIONS as NUMERICS
from edgesr.errors import ParityError, UserError
from edgesr.images import photo_crop, verification_inputs
from edgesr.families.classsr.model import CLASSES, ClassSR, ClassSRDeploy, tile_macs
from edgesr.pipeline import PreparedModel
from edgesr.profile import count_params
from edgesr.families.classsr.routing import (BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST, RoutedBundle, TileRunner, file_sha256,
                           upscale_tiled)
from edgesr.runtimes import TorchGraph, open_model_file
from edgesr.tiling import Tiling, extract_tiles, pad_to_tile, stitch
from edgesr.verify import (Check, Pair, Run, Subject, cached, check_pair, check_pairs, collect, expectation,
                           graph_model)
from edgesr.export.pipeline import op_counts

PRECISIONS = {"onnx": ("fp32",), "tflite": ("fp32", "fp16")}
SUFFIX = {"onnx": ".onnx", "tflite": ".tflite"}
EXPORT_IMAGE_SIZES = [(20, 26), (45, 61)]  # smaller than a tile (padded); several tiles, last ones border-aligned
DEMO_PHOTO = ("chelsea", 120, 160)  # routed at export time to report class shares and MACs


@dataclass
class BundleReport:
    """What an export wrote and how it was checked."""

    path: Path
    label: str
    fmt: str
    precision: str
    weights: str
    pixel_range: float
    tiling: Tiling
    graphs: list[dict]
    checks: list[Check]
    demo: str
    ops: Counter = field(default_factory=Counter)

    def format(self) -> str:
        lines = [f"exported {self.label} (RGB, 0..{self.pixel_range:g}) {self.fmt} {self.precision} bundle -> "
                 f"{self.path}/",
                 f"  weights   {self.weights}",
                 f"  tiling    {self.tiling.tile}x{self.tiling.tile} LR tiles, stride {self.tiling.stride} (last tile "
                 "aligned to the border; smaller images edge-padded)",
                 f"  {'graph':<18} {'file':<18} {'KiB':>7} {'params':>9} {'MACs/tile':>13}  ops"]
        for g in self.graphs:
            ops = ", ".join(f"{k} x{v}" for k, v in g["ops"].most_common())
            lines.append(f"  {g['name']:<18} {g['file']:<18} {g['bytes'] / 1024:>7.1f} {g['params']:>9,} "
                         f"{g['macs_per_tile']:>13,}  {ops}")
        transpose = "TRANSPOSE present!" if {"TRANSPOSE", "Transpose"} & set(self.ops) else "no TRANSPOSE op"
        lines.append(f"  ops       {transpose} in any graph")
        for c in self.checks:
            lines.append(f"  parity    {c.reference:<10} vs {c.candidate:<14} {c.inputs} inputs: max-abs "
                         f"{c.stats.max_abs:.3g}, deviation {c.deviation:.3g} (bound {c.bound:.3g}, "
                         f"{100 * c.used:.0f}% used): {c.result}")
        lines.append(f"  photo     {self.demo}")
        lines.append(f"  manifest  {self.path / MANIFEST}")
        return "\n".join(lines)


def models_table(spec) -> str:
    """`edgesr models` rows: params, and MACs per LR pixel of each graph on a tile (overlap not counted)."""
    t = Tiling().tile
    lines = [f"{'model':<8} {'variant':<19} {'scale':>5} {'params':>10} {'MACs/px classifier':>19} {'net1':>9} "
             f"{'net2':>9} {'net3':>9} {'GMAC 360x640 net3':>18}"]
    for variant in spec.presets:
        for scale in spec.scales:
            model = ClassSR(spec.config(variant, scale))
            macs = [tile_macs(m, 3, t) / (t * t) for m in (model.classifier, *model.branches)]
            lines.append(f"{spec.name:<8} {model.config.variant:<19} {'x' + str(scale):>5} {count_params(model):>10,} "
                         f"{macs[0]:>19,.0f} {macs[1]:>9,.0f} {macs[2]:>9,.0f} {macs[3]:>9,.0f} "
                         f"{(macs[0] + macs[3]) * 360 * 640 / 1e9:>18.2f}")
    lines.append("a routed tile costs the classifier + its class's subnet; tiles overlap (32/28: x1.31 pixels); "
                 "the last column is the worst case, every tile hard")
    return "\n".join(lines)


def check_bundle_format(fmt: str, precision: str) -> str:
    """Validate format/precision for a bundle; returns the graph file suffix."""
    if fmt not in PRECISIONS:
        raise UserError(f"unknown format '{fmt}': choose one of {', '.join(PRECISIONS)}")
    if precision not in PRECISIONS[fmt]:
        raise UserError(f"classsr {fmt} bundles support {', '.join(PRECISIONS[fmt])} only, not {precision} "
                        "(int8 would quantize the routing logits)")
    return SUFFIX[fmt]


def resolve_output(prepared: PreparedModel, fmt: str, precision: str, out: Path | None, force: bool) -> Path:
    """The bundle directory (default exports/classsr_<variant>_x<s>_<fmt>_<precision>), checked:
    an existing one is replaced only with --force and only if it is an edgesr bundle."""
    check_bundle_format(fmt, precision)
    cfg = prepared.config
    out = Path(out) if out is not None else \
        Path("exports") / f"{prepared.spec.name}_{cfg.variant.lower()}_x{cfg.scale}_{fmt}_{precision}"
    if out.suffix in (".onnx", ".tflite"):
        raise UserError(f"output {out} names a file, but classsr exports a directory (classifier + 3 subnets + "
                        f"{MANIFEST}): pass a directory name with -o")
    if out.exists():
        if not out.is_dir():
            raise UserError(f"output {out} exists and is not a directory: choose another path with -o")
        if not force:
            raise UserError(f"output directory {out} already exists: pass --force to replace it")
        if any(out.iterdir()) and not (out / MANIFEST).is_file():
            raise UserError(f"output directory {out} is not an edgesr bundle (no {MANIFEST}): refusing to replace "
                            "it; choose another path with -o")
    ensure_writable_parent(out)
    return out


def bundle_graphs(deploy: ClassSRDeploy) -> list[tuple[str, str, torch.nn.Module]]:
    """(graph name, class name or role, module) in manifest order."""
    return [("classifier", "classifier", deploy.classifier)] + [
        (f"net{k}", name, net) for k, (name, net) in enumerate(zip(CLASSES, deploy.branches, strict=True), start=1)]


def write_graph(module: torch.nn.Module, name: str, fmt: str, precision: str, colors: int, tile: int,
                path: Path) -> None:
    """One graph for batches of tile x tile inputs (dynamic batch, static H/W)."""
    if fmt == "onnx":
        from edgesr.export.onnx import export_onnx

        export_onnx(module, path, colors, example_shape=(2, colors, tile, tile), dynamic_dims={0: "batch"},
                    output_name="logits" if name == "classifier" else "sr")
        return
    from edgesr.families.classsr.keras import build_keras_branch, build_keras_classifier
    from edgesr.export.tflite import convert_keras

    if name == "classifier":
        path.write_bytes(convert_keras(build_keras_classifier(module, colors, tile), "fp32"))
    else:
        path.write_bytes(convert_keras(build_keras_branch(module, colors, tile, f"classsr_{name}"), precision))


def write_bundle(prepared: PreparedModel, fmt: str, precision: str, folder: Path,
                 progress: Callable[[str], None] = lambda _: None) -> dict:
    """Write the four graphs and manifest.json into `folder` (no checks); returns the manifest."""
    deploy: ClassSRDeploy = prepared.deploy
    cfg, t = prepared.config, deploy.tiling.tile
    entries = []
    for name, role, module in bundle_graphs(deploy):
        progress(f"converting {name} to {fmt} {'fp32' if name == 'classifier' else precision}")
        file = f"{name}{SUFFIX[fmt]}"
        write_graph(module, name, fmt, precision, cfg.colors, t, folder / file)
        entry = {"file": file, "sha256": file_sha256(folder / file), "params": count_params(module),
                 "macs_per_tile": tile_macs(module, cfg.colors, t),
                 "precision": "fp32" if name == "classifier" else precision}
        entries.append(entry if name == "classifier" else {"name": role, "graph": name, **entry})
    manifest = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "model": prepared.spec.name,
                "variant": cfg.variant, "config": cfg.to_dict(), "weights": prepared.weights,
                "runtime": fmt, "precision": precision, "scale": cfg.scale, "colors": cfg.colors,
                "pixel_range": cfg.pixel_range, "tile": t, "stride": deploy.tiling.stride, "blend": deploy.tiling.blend,
                "layout": "NCHW" if fmt == "onnx" else "NHWC",
                "classifier": entries[0], "classes": entries[1:]}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def hard_routed_reference(train: ClassSR) -> TileRunner:
    """The training graph with hard argmax routing on every tile: the reference of the routed path."""

    def run(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            sr, classes = train.eval().route_hard(torch.from_numpy(tiles))
        return sr.numpy(), classes.numpy()

    return run


def tile_inputs(colors: int, pixel_range: float, tile: int) -> list[tuple[str, np.ndarray]]:
    """Four single tiles (two random, two photo crops) and all four as one batch."""
    inputs = verification_inputs([(tile, tile)] * 2, colors, pixel_range, seed=1)
    return inputs + [(f"batch of {len(inputs)}", np.concatenate([x for _, x in inputs]))]


def graph_checks(prepared: PreparedModel, folder: Path, fmt: str, precision: str,
                 classifier: bool = True) -> list[Check]:
    """Every exported graph against its PyTorch module on tiles, within the error model (the
    classifier's logits too: what decides the argmax)."""
    deploy: ClassSRDeploy = prepared.deploy
    cfg = prepared.config
    inputs = tile_inputs(cfg.colors, cfg.pixel_range, deploy.tiling.tile)
    checks = []
    for name, _, module in bundle_graphs(deploy):
        if name == "classifier" and not classifier:
            continue
        graph_precision = "fp32" if name == "classifier" else precision
        file, candidate = folder / f"{name}{SUFFIX[fmt]}", f"{fmt}-{graph_precision}"
        reference = graph_model(module)
        runs = collect({name: Subject(lambda module=module: TorchGraph(module), reference),
                        candidate: Subject(lambda file=file: open_model_file(file),
                                           expectation(reference, module, graph_precision, file, cfg.colors,
                                                       cfg.pixel_range))},
                       inputs)
        peak = max(cfg.pixel_range, max(float(np.abs(y).max()) for y in runs[name].outputs))  # logits: PSNR peak
        checks += check_pairs(runs, [Pair(name, candidate, graph_precision)], peak)
    return checks


def routed_model(train: ClassSR, tiling: Tiling, branch_precision: str = "fp32") -> Callable[[np.ndarray], Modelled]:
    """The error model of the routed image: hard routing tile by tile (a tile whose top two
    logits are within the model's noise is exempt), stitched exactly in float64. A bundle at
    another precision adds the exact effect of its branches' storage (the classifier is fp32)."""
    graph = at_precision(train, NUMERICS["fp32"])
    stored = None
    if branch_precision != "fp32":
        stored = at_precision(train, NUMERICS["fp32"])
        for net, source in zip(stored.branches, at_precision(train, NUMERICS[branch_precision]).branches,
                               strict=True):
            net.load_state_dict(source.state_dict())
    scale = train.config.scale

    def tiled(module, x: np.ndarray) -> Modelled:
        height, width = x.shape[2], x.shape[3]
        padded = pad_to_tile(np.asarray(x, dtype=np.float64), tiling.tile)
        tiles, _ = extract_tiles(padded, tiling)
        m = modelled(module, tiles, call=lambda mod, t: mod.route_hard(t)[0], prepared=module)
        h, w = padded.shape[2], padded.shape[3]
        value = stitch(m.value, tiling, h, w, scale)
        # the float32 blend (a product and up to four additions per pixel) rounds as well
        sigma = stitch(m.sigma, tiling, h, w, scale) + FP32_U * np.sqrt(5 / 3) * np.abs(value)
        exempt = stitch(m.exempt.astype(np.float64), tiling, h, w, scale) > 0
        allowance = stitch(np.broadcast_to(m.allowance, m.value.shape), tiling, h, w, scale)
        crop = (..., slice(0, height * scale), slice(0, width * scale))
        return Modelled(value[crop], sigma[crop], exempt[crop], m.unstable_decisions, allowance[crop])

    def model(x: np.ndarray) -> Modelled:
        exact = tiled(graph, x)
        if stored is None:
            return exact
        own = tiled(stored, x)
        return Modelled(own.value, np.hypot(own.sigma, exact.sigma), own.exempt | exact.exempt,
                        own.unstable_decisions, own.allowance + exact.allowance)

    return cached(model)


def image_checks(prepared: PreparedModel, candidates: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]],
                 inputs: list[tuple[str, np.ndarray]]) -> list[Check]:
    """Routed whole images (candidate name -> (graph, precision)) against the training graph with
    hard routing, tile by tile ('image' rows), each within its routed error model."""
    deploy: ClassSRDeploy = prepared.deploy
    cfg = prepared.config
    models = {p: routed_model(prepared.train, deploy.tiling, p) for p in {"fp32", *(p for _, p in candidates.values())}}
    reference = hard_routed_reference(prepared.train)
    images = [x for _, x in inputs]
    image = Run([upscale_tiled(x, deploy.tiling, cfg.scale, reference)[0] for x in images],
                [models["fp32"](x) for x in images])
    checks = []
    for name, (graph, precision) in candidates.items():
        run = Run([graph(x) for x in images], [models[precision](x) for x in images])
        checks.append(check_pair(Pair("image", name, precision), image, run, cfg.pixel_range))
    return checks


def export_bundle(prepared: PreparedModel, fmt: str, precision: str, out: Path | None = None, force: bool = False,
                  progress: Callable[[str], None] = lambda _: None) -> BundleReport:
    """Export, verify every graph and the routed image, then rename the directory into place."""
    out = resolve_output(prepared, fmt, precision, out, force)
    cfg = prepared.config
    with atomic_directory(out, force) as tmp:
        manifest = write_bundle(prepared, fmt, precision, tmp, progress)
        progress("checking each graph against its PyTorch module")
        checks = graph_checks(prepared, tmp, fmt, precision)
        progress("checking the routed image against the training graph (hard routing, tile by tile)")
        bundle = RoutedBundle(tmp)
        name, h, w = DEMO_PHOTO
        demo_input = photo_crop(name, h, w, cfg.colors, cfg.pixel_range, np.random.default_rng(0))
        inputs = verification_inputs(EXPORT_IMAGE_SIZES, cfg.colors, cfg.pixel_range, seed=2) + \
            [(f"{name} {h}x{w}", demo_input)]
        checks += image_checks(prepared, {f"{fmt}-{precision}": (bundle, precision)}, inputs)
        failed = [c for c in checks if not c.passed]
        if failed:
            raise ParityError(f"classsr {fmt} {precision} bundle failed its parity check: {failed[0].problem()}; "
                              "nothing written")
        demo = f"{name} {h}x{w} crop, {bundle.route(demo_input).summary(bundle.class_names)}"
        manifest["verification"] = [c.to_dict() for c in checks]
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        graphs, ops = [], Counter()
        for entry in [manifest["classifier"], *manifest["classes"]]:
            graph_ops = op_counts(tmp / entry["file"], fmt)
            ops += graph_ops
            graphs.append({"name": f"{entry['graph']} ({entry['name']})" if "graph" in entry else "classifier",
                           "file": entry["file"], "bytes": (tmp / entry["file"]).stat().st_size,
                           "params": entry["params"], "macs_per_tile": entry["macs_per_tile"], "ops": graph_ops})
    return BundleReport(out, prepared.label, fmt, precision, prepared.weights, cfg.pixel_range,
                        prepared.deploy.tiling, graphs, checks, demo, ops)


def verify_bundle(prepared: PreparedModel, precisions: list[str], sizes: list[tuple[int, int]],
                  progress: Callable[[str], None] = lambda _: None) -> list[Check]:
    """`edgesr verify --model classsr`: the PyTorch bundle and every exported bundle (ONNX fp32,
    TFLite per precision) against the training graph; each graph against its module."""
    cfg = prepared.config
    progress("rows: classifier/net1-3 = each exported graph vs its PyTorch module on tiles; image = routed "
             "whole-image inference vs the training graph with hard routing, tile by tile")
    files = [("onnx", "fp32")] if "fp32" in precisions else []
    files += [("tflite", p) for p in precisions if p in PRECISIONS["tflite"]]
    if "int8" in precisions:
        progress("int8: not supported for classsr bundles (it would quantize the routing logits): skipped")
    inputs = verification_inputs(sizes, cfg.colors, cfg.pixel_range)
    candidates: dict = {"deploy": (TorchGraph(prepared.deploy), "fp32")}
    checks: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="edgesr-verify-") as scratch:
        for fmt, precision in files:
            folder = Path(scratch) / f"{fmt}-{precision}"
            folder.mkdir()
            write_bundle(prepared, fmt, precision, folder, progress)
            progress(f"checking {fmt} {precision} graphs")
            checks += graph_checks(prepared, folder, fmt, precision, classifier=precision == "fp32")
            candidates[f"{fmt}-{precision}"] = (RoutedBundle(folder), precision)
        progress(f"routing {len(inputs)} images through {len(candidates)} bundles")
        checks += image_checks(prepared, candidates, inputs)
    return checks
