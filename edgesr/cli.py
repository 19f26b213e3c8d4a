"""The `edgesr` command line: models, export, verify, bench, train, eval, upscale."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from edgesr import __version__, interrupts
from edgesr.errors import Terminated, ToolError, UserError, os_error
from edgesr.verify import DEFAULT_SIZES

PRECISIONS = ("fp32", "fp16", "int8")
HOST_RUNTIMES = ["torch-train", "torch", "onnxruntime", "tflite"]
MAX_VERIFY_SIDE = 2048
OUTPUT_FORMATS = {".png": ("PNG", {}), ".jpg": ("JPEG", {"quality": 95}), ".jpeg": ("JPEG", {"quality": 95}),
                  ".webp": ("WEBP", {"lossless": True}), ".bmp": ("BMP", {}), ".tif": ("TIFF", {}),
                  ".tiff": ("TIFF", {})}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _progress(message: str) -> None:
    print(f"[edgesr {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _size_list(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        try:
            h, w = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{item}' is not HxW (e.g. 48x48,37x53)") from None
        if not (1 <= h <= MAX_VERIFY_SIDE and 1 <= w <= MAX_VERIFY_SIDE):
            raise argparse.ArgumentTypeError(f"size {item} must have sides between 1 and {MAX_VERIFY_SIDE}")
        sizes.append((h, w))
    return sizes


def _pixel_range(text: str) -> float:
    if text not in ("1", "255"):
        raise argparse.ArgumentTypeError("pixel range must be 1 (inputs in 0..1) or 255 (inputs in 0..255)")
    return float(text)


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default="ecbsr", help="model family (default: ecbsr; see 'edgesr models')")
    group.add_argument("--variant", help="architecture, e.g. M4C16 or M4C16-RGB (default: the model's "
                       "default, or the checkpoint's own)")
    group.add_argument("--scale", type=int, help="upscale factor (default: 4, or the checkpoint's)")
    group.add_argument("--weights", type=Path, metavar="CKPT",
                       help="PyTorch checkpoint: authors', BasicSR ({'params'|'params_ema': ...}) or edgesr; "
                       "training or deploy layout (default: the built-in checkpoint)")
    group.add_argument("--pixel-range", type=_pixel_range, metavar="{1,255}",
                       help="input value range (default: 255 for official ECBSR weights, 1 for BasicSR)")


def _prepare(args: argparse.Namespace):
    from edgesr.pipeline import prepare

    return prepare(args.model, args.variant, args.scale, args.weights, args.pixel_range)


def _announce(prepared) -> None:
    """Print the weights notice once every option has been validated."""
    if prepared.notice:
        print(prepared.notice, file=sys.stderr)


def _checked_prepare(args: argparse.Namespace, *outputs: Path | None):
    """Refuse unusable output paths, build the model, then print the weights notice."""
    from edgesr.atomic import check_output_path

    for path in outputs:
        if path:
            check_output_path(path, args.force)
    prepared = _prepare(args)
    _announce(prepared)
    return prepared


def cmd_models(args: argparse.Namespace) -> int:
    """Print every model, preset and scale with params and MACs per LR pixel."""
    from edgesr.profile import count_params, macs_per_lr_pixel
    from edgesr.registry import MODELS, get_model

    specs = [get_model(args.model)] if args.model else list(MODELS.values())
    width = max(len(spec.config(v, spec.default_scale).variant) for spec in specs for v in spec.presets) + 1
    header = f"{'model':<8} {'variant':<{width}} {'scale':>5} {'params train':>13} {'params deploy':>14} " \
             f"{'MACs/px train':>14} {'MACs/px deploy':>15} {'GMAC 360x640':>13}"
    for spec in specs:
        print(f"{spec.name}: {spec.summary}")
        if spec.bundle:  # several graphs: one MACs column per graph
            print(spec.bundle_ops().models_table(spec))
            continue
        print(header)
        for variant in spec.presets:
            for scale in spec.scales:
                cfg = spec.config(variant, scale)
                train = spec.train_graph(cfg)
                deploy = train.reparameterize()
                deploy_macs = macs_per_lr_pixel(deploy, cfg.colors)
                print(f"{spec.name:<8} {cfg.variant:<{width}} {'x' + str(scale):>5} {count_params(train):>13,} "
                      f"{count_params(deploy):>14,} {macs_per_lr_pixel(train, cfg.colors):>14,.0f} "
                      f"{deploy_macs:>15,.0f} {deploy_macs * 360 * 640 / 1e9:>13.2f}")
    print("MACs are multiply-accumulates of conv/linear layers (1 MAC = 2 FLOPs), per low-resolution pixel.")
    return 0


def _cost_notes(prepared) -> list[str]:
    """A model's extra cost lines (SMSR: MACs at measured sparsity); none for most models."""
    notes = prepared.spec.cost_notes
    return notes(prepared.deploy) if notes is not None else []


def _ops_line(ops) -> str:
    return ", ".join(f"{name} x{count}" for name, count in ops.most_common())


def cmd_export(args: argparse.Namespace) -> int:
    """Export one model file and print what was written and how it was verified."""
    from edgesr.export.pipeline import check_format, export_verified, resolve_output

    check_format(args.format, args.precision)
    prepared = _prepare(args)
    bundle = prepared.spec.bundle_ops()
    if bundle is not None:  # multi-graph model: a verified directory of graphs + manifest
        output = bundle.resolve_output(prepared, args.format, args.precision, args.output, args.force)
        _announce(prepared)
        print(bundle.export_bundle(prepared, args.format, args.precision, output, args.force, _progress).format())
        return 0
    output = resolve_output(prepared, args.format, args.precision, args.output, args.force)
    _announce(prepared)
    report = export_verified(prepared, args.format, args.precision, output, args.force, _progress)
    cfg = prepared.config
    check = report.parity
    transpose = "TRANSPOSE present!" if "TRANSPOSE" in report.ops or "Transpose" in report.ops else "no TRANSPOSE"
    train_params = f" (training graph {report.train_params:,})" if report.train_params else ""
    print(f"exported {prepared.label} ({'Y' if cfg.colors == 1 else 'RGB'}, 0..{cfg.pixel_range:g}) "
          f"{args.format} {args.precision} -> {report.path}")
    print(f"  weights  {prepared.weights}")
    print(f"  size     {report.size_bytes / 1024:.1f} KiB")
    print(f"  params   {report.params:,} deploy graph{train_params}")
    print(f"  MACs     {report.macs_per_pixel:,.0f} per LR pixel = "
          f"{report.macs_per_pixel * 360 * 640 / 1e9:.2f} GMAC at 360x640 LR")
    for line in _cost_notes(prepared):
        print(f"  {line}")
    print(f"  ops      {_ops_line(report.ops)} ({transpose})")
    print(f"  parity   vs {check.reference} graph over {check.inputs} inputs: max-abs {check.stats.max_abs:.3g}, "
          f"PSNR {check.stats.psnr_db:.1f} dB; deviation from the {args.precision} error model {check.deviation:.3g} "
          f"(bound {check.bound:.3g}, {100 * check.used:.0f}% used): {check.result}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Run all graphs on the same inputs, print the error table, fail on a broken bound."""
    from edgesr.atomic import write_bytes_atomic
    from edgesr.verify import explain_bounds, format_table
    from edgesr.verify_model import verify_prepared

    prepared = _checked_prepare(args, args.json)
    cfg = prepared.config
    _check_pixels_fit("verifying", prepared, sum(h * w for h, w in args.sizes), "use smaller --sizes")
    bundle = prepared.spec.bundle_ops()
    verify = bundle.verify_bundle if bundle is not None else verify_prepared
    precisions = args.precision or list(prepared.spec.verify_precisions or PRECISIONS)
    checks = verify(prepared, precisions, args.sizes, _progress)
    sizes = ", ".join(f"{h}x{w}" for h, w in args.sizes)
    print(f"verify {prepared.label} ({'Y' if cfg.colors == 1 else 'RGB'}, 0..{cfg.pixel_range:g}); "
          f"weights: {prepared.weights}")
    print(f"inputs: random + real photo crop at each of {sizes}; worst case over all inputs; "
          f"PSNR with peak {cfg.pixel_range:g}")
    if not args.precision and prepared.spec.verify_note:
        print(f"note: {prepared.spec.verify_note}")
    print(format_table(checks))
    print(explain_bounds())
    failed = [c for c in checks if not c.passed]
    if args.json:
        payload = {"model": prepared.spec.name, "config": cfg.to_dict(), "weights": prepared.weights,
                   "sizes": args.sizes, "checks": [c.to_dict() for c in checks]}
        write_bytes_atomic(args.json, json.dumps(payload, indent=2).encode(), force=args.force)
    if failed:
        print(f"FAILED: {len(failed)} of {len(checks)} checks; first: {failed[0].problem()}", file=sys.stderr)
        return 1
    print(f"all {len(checks)} checks passed")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Benchmark on the host CPU (or compare two saved reports)."""
    from edgesr.bench import report as reports

    if args.action == "compare":
        if len(args.files) != 2:
            raise UserError("bench compare takes two report files: edgesr bench compare A.json B.json")
        print(reports.compare(reports.load_report(args.files[0]), reports.load_report(args.files[1])))
        return 0
    if args.action is not None or args.files:
        raise UserError(f"unknown bench action '{args.action or args.files[0]}': use 'edgesr bench compare A B' "
                        "or options only")
    from edgesr.atomic import check_output_path

    if args.device == "adb":
        return _bench_adb(args)
    if args.tflite:
        raise UserError("--tflite benchmarks a given file on a phone (--device adb); on the host, bench exports "
                        "and verifies the model itself: drop --tflite, or add --device adb")
    from edgesr.bench.host import check_options, host_device, plan_cases, run_bench

    args.runtime = args.runtime or HOST_RUNTIMES
    check_options(args.runtime, args.precision, args.threads, args.warmup, args.runs, args.rounds)
    for path in (args.json, args.csv, args.plot):
        if path:
            check_output_path(path, args.force)
    prepared = _prepare(args)
    if prepared.spec.bundle:  # ClassSR: routed bundle vs its largest branch (benchmarks/classsr_routed.py)
        from edgesr.bench.classsr_routed import bench_from_cli

        _announce(prepared)
        print(bench_from_cli(prepared, args, _progress))
        return 0
    cases = plan_cases(prepared, args.runtime, args.precision, args.input, args.threads)
    _announce(prepared)
    report = reports.new_report(host_device(), {"warmup": args.warmup, "runs": args.runs,
                                                "rounds": args.rounds, "weights": prepared.weights})
    report["cases"] = run_bench(prepared, cases, args.warmup, args.runs, args.rounds, _progress)
    print(f"bench {prepared.label} on {report['device']['name']} ({report['device']['cpu']['simd']})")
    print(reports.format_table(report))
    print(f"peak = {report['device']['peak_assumption']}")
    for line in _cost_notes(prepared):
        print(line)
    for path in reports.write_outputs(report, args.json, args.csv, args.plot, args.force):
        print(f"wrote {path}")
    return 0


def _bench_adb(args: argparse.Namespace) -> int:
    """edgesr bench --device adb: benchmark_model on a phone through a real adb server."""
    from edgesr.android.adb import Adb
    from edgesr.android.command import bench_on_device, check_device_options
    from edgesr.android.bench import DeviceSettings, check_binary
    from edgesr.bench import report as reports
    from edgesr.atomic import check_output_path

    if args.runtime and args.runtime != ["tflite"]:
        raise UserError("--device adb benchmarks .tflite files with benchmark_model: drop --runtime "
                        "(or use --runtime tflite)")
    check_device_options(args.delegate, args.precision, args.threads, args.warmup, args.runs, args.cooldown)
    binary = check_binary(args.benchmark_binary)
    for path in (args.json, args.csv, args.plot):
        if path:
            check_output_path(path, args.force)
    adb = Adb(args.adb)
    device = adb.select(args.serial)
    settings = DeviceSettings(binary, args.cores, args.cooldown, args.max_temp, args.warmup, args.runs, args.keep,
                              tuple(args.benchmark_arg))

    def prepare_model():
        prepared = _prepare(args)
        _announce(prepared)
        return prepared

    from edgesr.registry import get_model

    if (args.tflite and args.tflite.is_dir()) or (not args.tflite and get_model(args.model).bundle):
        from edgesr.android.classsr import bench_bundle_on_device, format_combined

        if not args.tflite and args.precision != ["fp32"]:
            raise UserError("the classsr phone bench exports an fp32 bundle: for fp16, export one with "
                            "'edgesr export --model classsr --precision fp16' and pass it with --tflite DIR")
        report = bench_bundle_on_device(adb, device.serial, args.tflite, None if args.tflite else prepare_model,
                                        args.delegate, args.threads, args.input, settings, _progress)
    else:
        report = bench_on_device(adb, device.serial, None if args.tflite else prepare_model, args.tflite,
                                 args.precision, args.delegate, args.threads, args.input, settings, _progress)
    facts = report["device"]
    print(f"bench on {reports.device_title(facts)} ({device.serial}, Android {facts['android']}, {facts['abi']}, "
          f"SoC {facts['soc']}); cores {args.cores}; thermal before {facts['thermal_c']}, "
          f"after {facts['thermal_after_c']}")
    print(reports.format_table(report))
    if "classsr" in report:
        print("classsr routed estimate (classifier on all tiles + each class's tiles at its subnet's per-tile "
              "time; host-side tiling/stitching not included):")
        print(format_combined(report))
    print("device numbers come from benchmark_model (mean/min/max/std per run set; no median)")
    for path in reports.write_outputs(report, args.json, args.csv, args.plot, args.force):
        print(f"wrote {path}")
    return 0


def _data_folder(text: str, scratch: Path) -> Path:
    """A folder of images, or 'skimage' for scikit-image's bundled photos (the held-out set)."""
    if text == "skimage":
        from edgesr.images import write_heldout_photos

        write_heldout_photos(scratch)
        return scratch
    return Path(text)


def _training_stage(model: str, stages: tuple[str, ...], stage: str | None) -> str | None:
    """A staged recipe (ClassSR) needs --stage; a one-stage recipe refuses it."""
    if stages and stage is None:
        later = ", then ".join(f"--stage {s} --weights <the previous stage's checkpoint>" for s in stages[1:])
        count = {2: "two", 3: "three", 4: "four"}.get(len(stages), str(len(stages)))
        raise UserError(f"{model} trains in {count} stages: pass --stage {stages[0]}, then {later}")
    if stage is not None and stage not in stages:
        raise UserError(f"--stage is for classsr's staged recipe; {model} trains in one stage: drop --stage")
    return stage


def cmd_train(args: argparse.Namespace) -> int:
    """Train a model on a folder of HR images and save an edgesr checkpoint."""
    import math
    import tempfile

    import torch

    from edgesr.atomic import ensure_writable_parent
    from edgesr.checkpoints import load_strict, read_checkpoint
    from edgesr.data import list_images, load_pairs
    from edgesr.pipeline import PreparedModel
    from edgesr.registry import get_model
    from edgesr.train import TrainSettings, recipe_for, train

    spec = get_model(args.model)
    recipe = recipe_for(spec.name)
    stage = _training_stage(spec.name, recipe.stages, args.stage)
    config = spec.config(args.variant, args.scale, args.pixel_range)
    spec.check_fits(config)
    settings = TrainSettings(args.iters, recipe.batch if args.batch is None else args.batch,
                             recipe.lr_patch(config.scale) if args.patch is None else args.patch,
                             recipe.lr_for(stage) if args.lr is None else args.lr, args.seed, args.save_every)
    if settings.iters < 1 or settings.batch < 1 or settings.save_every < 1 or settings.lr_patch < 4:
        raise UserError("--iters, --batch and --save-every must be >= 1, --patch >= 4")
    if not (math.isfinite(settings.lr) and settings.lr > 0):
        raise UserError(f"--lr {settings.lr:g} is not a learning rate: pass a finite number > 0, e.g. 5e-4")
    if args.resume and args.weights:
        raise UserError("--resume continues the run saved in --output; --weights starts a new run from a "
                        "checkpoint: pass one of them")
    resume_state = None
    if args.output.is_dir():
        raise UserError(f"-o {args.output} is a directory: pass the checkpoint file to write, e.g. "
                        f"{args.output / 'model.pt'}")
    if args.resume and not args.output.exists():
        raise UserError(f"--resume: there is no run to resume, {args.output} does not exist: drop --resume to start "
                        "a new run, or pass the -o of the interrupted run")
    if args.output.exists() and not (args.resume or args.force):
        raise UserError(f"{args.output} exists: pass --resume to continue that run or --force to start over")
    if args.resume and args.force:
        raise UserError("--resume continues the run in -o, --force starts it over: pass one of them")
    ensure_writable_parent(args.output)
    if args.val and args.val != "skimage":
        list_images(Path(args.val))  # a missing --val folder fails now, not after the training
    torch.manual_seed(args.seed)
    model = spec.train_graph(config)
    label = f"{spec.name} {config.variant} x{config.scale}"
    start_from = args.output if args.resume else args.weights
    if start_from:
        checkpoint = read_checkpoint(start_from)
        saved = checkpoint.metadata.get("config")
        if saved is not None and saved != config.to_dict():
            raise UserError(f"{start_from} was trained as {saved}, not {config.to_dict()}: pass the same "
                            "--variant/--scale/--pixel-range")
        load_strict(model, checkpoint.state_dict, label)
    if start_from and args.resume:
        saved_stage = checkpoint.metadata.get("stage")
        if saved_stage != stage:
            raise UserError(f"{args.output} was saved in training stage {saved_stage}, not {stage}: pass "
                            f"--stage {saved_stage} to resume it")
        resume_state = torch.load(args.output, map_location="cpu", weights_only=True).get("train_state")
        if resume_state is None:
            raise UserError(f"{args.output} is a finished run ({checkpoint.metadata.get('iterations')} iterations): "
                            "there is nothing to resume; use --force to start over")
    if stage:
        model.set_stage(stage)
    pairs = load_pairs(args.data, config.scale, config.colors, min_lr_side=settings.lr_patch)
    what = f"stage {stage}" if stage else "L1"
    _progress(f"training {label} on {len(pairs.names)} images ({len(pairs.skipped)} skipped) for "
              f"{settings.iters} iterations: batch {settings.batch}, LR patch {settings.lr_patch}, Adam lr "
              f"{settings.lr:g}, {what}, seed {settings.seed}")
    train(model, spec.name, config, pairs, settings, args.output, resume_state, _progress)
    print(f"saved {args.output} ({args.output.stat().st_size / 1024:.0f} KiB)")
    if args.val:
        trained = PreparedModel(spec, config, model, model.reparameterize(), str(args.output), True)
        with tempfile.TemporaryDirectory() as scratch:
            return _print_eval(trained, _data_folder(args.val, Path(scratch)), None, "deploy")
    return 0


def _check_pixels_fit(doing: str, prepared, pixels: int, advice: str) -> None:
    """Refuse inputs whose activations (in the float64 error model: value and variance of a few
    live tensors) would not fit in memory."""
    from edgesr.profile import peak_activation_per_pixel
    from edgesr.resources import check_fits

    per_pixel = peak_activation_per_pixel(prepared.deploy, prepared.config.colors)
    check_fits(f"{doing} {prepared.label} on {pixels:,} LR pixels", int(pixels * per_pixel * 8 * 2 * 6), advice)


def _open_checked(path: Path, prepared):
    """An exported model file, checked to take the model's colours and upscale by its scale."""
    from edgesr.runtimes import check_model_file, open_model_file

    graph = open_model_file(path)
    cfg = prepared.config
    check_model_file(graph, path, cfg.colors, cfg.scale, prepared.label)
    return graph


def _print_eval(prepared, folder: Path, model_file: Path | None, graph_name: str, json_path: Path | None = None,
                force: bool = False) -> int:
    from edgesr.atomic import write_bytes_atomic
    from edgesr.evaluate import evaluate_folder, mean_scores
    from edgesr.profile import peak_activation_per_pixel
    from edgesr.runtimes import TorchGraph

    cfg = prepared.config
    module = prepared.train if graph_name == "train" and prepared.train is not None else prepared.deploy
    if model_file:
        graph, what = _open_checked(model_file, prepared), str(model_file)
    else:
        graph, what = TorchGraph(module), f"{graph_name} graph"
    result = evaluate_folder(graph, folder, cfg.scale, cfg.colors, cfg.pixel_range, _progress,
                             4 * 3 * peak_activation_per_pixel(module, cfg.colors))
    scores = result.images
    print(f"eval {prepared.label} ({what}, weights: {prepared.weights}) on {folder}: "
          f"Y PSNR/SSIM with a {cfg.scale}-pixel border crop on 8-bit output; RGB PSNR alongside")
    print(f"{'image':<24} {'PSNR-Y':>8} {'SSIM-Y':>7} {'PSNR-RGB':>9} | {'bicubic PSNR-Y':>14} {'SSIM-Y':>7} "
          f"{'PSNR-RGB':>9}")
    for s in scores:
        print(f"{s.name:<24} {s.psnr_y:>8.3f} {s.ssim_y:>7.4f} {s.psnr_rgb:>9.3f} | {s.bicubic_psnr_y:>14.3f} "
              f"{s.bicubic_ssim_y:>7.4f} {s.bicubic_psnr_rgb:>9.3f}")
    mean = mean_scores(scores)
    print(f"{'mean':<24} {mean['psnr_y']:>8.3f} {mean['ssim_y']:>7.4f} {mean['psnr_rgb']:>9.3f} | "
          f"{mean['bicubic_psnr_y']:>14.3f} {mean['bicubic_ssim_y']:>7.4f} {mean['bicubic_psnr_rgb']:>9.3f}")
    print(f"gain over bicubic: {mean['psnr_y'] - mean['bicubic_psnr_y']:+.3f} dB PSNR-Y")
    if result.skipped:
        print(f"{len(result.skipped)} of {len(result.skipped) + len(scores)} images skipped (see the warnings): "
              f"{', '.join(result.skipped)}")
    if json_path:
        payload = {"model": prepared.spec.name, "config": cfg.to_dict(), "weights": prepared.weights, "graph": what,
                   "data": str(folder), "images": [s.to_dict() for s in scores], "skipped": result.skipped,
                   "mean": mean}
        write_bytes_atomic(json_path, json.dumps(payload, indent=2).encode(), force)
        print(f"wrote {json_path}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """PSNR/SSIM of a model (training graph, deploy graph or exported file) vs bicubic."""
    import tempfile

    prepared = _checked_prepare(args, args.json)
    with tempfile.TemporaryDirectory() as scratch:
        return _print_eval(prepared, _data_folder(args.data, Path(scratch)), args.model_file, args.graph,
                           args.json, args.force)


def cmd_upscale(args: argparse.Namespace) -> int:
    """Super-resolve one image file."""
    from PIL import Image

    from edgesr.atomic import atomic_output
    from edgesr.data import image_size, load_rgb
    from edgesr.profile import peak_activation_per_pixel
    from edgesr.resources import check_fits
    from edgesr.families.classsr.routing import RouteTally
    from edgesr.runtimes import TorchGraph, check_model_file, open_model_file
    from edgesr.upscale import memory_needed, upscale_rgb

    if args.tile < 16 or not 0 <= args.overlap < args.tile // 2:
        raise UserError("--tile must be >= 16 and --overlap between 0 and tile/2")
    image_format = OUTPUT_FORMATS.get(args.output.suffix.lower())
    if args.output.is_dir():
        raise UserError(f"output path {args.output} is a directory: pass a file name, e.g. {args.output / 'sr.png'}")
    if image_format is None:
        raise UserError(f"output {args.output} is no image type edgesr writes: end it in "
                        f"{', '.join(OUTPUT_FORMATS)} (.png and .webp are lossless)")
    height, width = image_size(args.image)
    prepared = _checked_prepare(args, args.output)
    cfg = prepared.config
    activations = 4 * 3 * peak_activation_per_pixel(prepared.deploy, cfg.colors)
    check_fits(f"upscaling {args.image} ({width}x{height}) x{cfg.scale} to {width * cfg.scale}x{height * cfg.scale}",
               memory_needed(height, width, cfg.scale, args.tile, activations),
               "downscale or crop the image first, or use a smaller --tile")
    graph = _open_checked(args.model_file, prepared) if args.model_file else TorchGraph(prepared.deploy)
    route = getattr(graph if args.model_file else prepared.deploy, "route", None)  # ClassSR: routed tiles
    tally = RouteTally(route) if route else None
    rgb = load_rgb(args.image, np.float32)
    _progress(f"upscaling {args.image.name} ({width}x{height}) x{cfg.scale} with {prepared.label}")
    out = upscale_rgb(tally or graph, rgb, cfg.scale, cfg.colors, cfg.pixel_range, args.tile, args.overlap)
    del rgb
    with atomic_output(args.output, args.force) as tmp:
        Image.fromarray(out).save(tmp, format=image_format[0], **image_format[1])
    print(f"wrote {args.output} ({out.shape[1]}x{out.shape[0]})")
    if tally:
        from edgesr.families.classsr.model import CLASSES

        print(f"routed {tally.total().summary(CLASSES)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgesr", description="Take efficient super-resolution networks from their "
                     "training graph to verified ONNX/TFLite models and measure them.")
    parser.add_argument("--version", action="version", version=f"edgesr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    models = sub.add_parser("models", help="list models, variants, params and MACs per LR pixel",
                            description="List every model family, preset and scale with parameter "
                            "counts and MACs per low-resolution pixel (training and deploy graphs).")
    models.add_argument("--model", help="only this model family")
    models.set_defaults(func=cmd_models)

    export = sub.add_parser("export", help="re-parameterize and export to ONNX or TFLite, verified",
                            description="Re-parameterize the training graph, export the deploy graph, "
                            "check the file against the training graph, and only then write it.")
    _add_model_args(export)
    export.add_argument("--format", default="tflite", help="onnx or tflite (default: tflite)")
    export.add_argument("--precision", default="fp32", help="fp32, fp16 or int8 (TFLite); ONNX is fp32")
    export.add_argument("-o", "--output", type=Path, help="output file (default: exports/<model>_<variant>_"
                        "x<scale>_<precision>.<ext>)")
    export.add_argument("--force", action="store_true", help="overwrite an existing output file")
    export.set_defaults(func=cmd_export)

    verify = sub.add_parser("verify", help="compare training, deploy, ONNX and TFLite outputs",
                            description="Run the training graph, deploy graph, ONNX file (ONNX Runtime) "
                            "and TFLite files (LiteRT) on the same random and real images and print "
                            "max-abs error and PSNR for each pair. Exit 1 if a bound is broken.")
    _add_model_args(verify)
    verify.add_argument("--precision", nargs="+", choices=PRECISIONS,
                        help="TFLite precisions to check (default: all; smsr: fp32)")
    verify.add_argument("--sizes", type=_size_list, default=DEFAULT_SIZES,
                        help="LR input sizes HxW,... (default: 48x48,37x53,64x41)")
    verify.add_argument("--json", type=Path, help="also write the results to this JSON file")
    verify.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    verify.set_defaults(func=cmd_verify)

    bench = sub.add_parser("bench", help="measure latency per runtime, precision, size and threads",
                           description="Benchmark latency on the host CPU: each case runs in its own "
                           "process, timed in interleaved rounds. 'edgesr bench compare A.json B.json' "
                           "prints the median ratios of two saved reports.")
    bench.add_argument("action", nargs="?", help="'compare' to compare two reports")
    bench.add_argument("files", nargs="*", type=Path, help="the two reports for 'compare'")
    _add_model_args(bench)
    bench.add_argument("--device", default="host", choices=["host", "adb"],
                       help="host CPU (default) or an Android phone through adb")
    bench.add_argument("--runtime", nargs="+", help="host: torch-train (training graph), torch (deploy graph), "
                       "onnxruntime, tflite (default: all four); adb: tflite")
    bench.add_argument("--precision", nargs="+", default=["fp32"],
                       help="fp32, fp16, int8 (fp16/int8: tflite only; default: fp32)")
    bench.add_argument("--input", nargs="+", default=["360x640"], metavar="SIZE",
                       help="LR input sizes, HxW or NxCxHxW (default: 360x640)")
    bench.add_argument("--threads", nargs="+", type=int, default=[1], help="thread counts (default: 1)")
    bench.add_argument("--warmup", type=int, default=5, help="untimed runs per case (default: 5)")
    bench.add_argument("--runs", type=int, default=30, help="timed runs per case (default: 30)")
    bench.add_argument("--rounds", type=int, default=3, help="interleaved rounds the runs are split over "
                       "(default: 3)")
    bench.add_argument("--json", type=Path, help="write the report as JSON")
    bench.add_argument("--csv", type=Path, help="write the report as CSV")
    bench.add_argument("--plot", type=Path, help="write a PNG plot (latency vs size; per model)")
    bench.add_argument("--force", action="store_true", help="overwrite existing report files")
    device = bench.add_argument_group("--device adb")
    device.add_argument("--serial", help="adb serial of the phone (needed when several are connected)")
    device.add_argument("--adb", help="adb client binary (default: adb on PATH; honours ANDROID_ADB_SERVER_PORT)")
    device.add_argument("--benchmark-binary", type=Path, metavar="PATH",
                        help="TFLite benchmark_model for the phone's ABI (see android_bench/README.md)")
    device.add_argument("--delegate", nargs="+", default=["xnnpack"],
                        help="cpu, xnnpack, gpu, nnapi (default: xnnpack)")
    device.add_argument("--cores", default="big", help="big, little, all or a hex CPU mask (default: big)")
    device.add_argument("--cooldown", type=int, default=5, help="seconds to idle before each run (default: 5)")
    device.add_argument("--max-temp", type=float, metavar="C",
                        help="wait (up to 300 s) until every thermal zone is at or below C before each run")
    device.add_argument("--tflite", type=Path, help="benchmark this .tflite file (or exported ClassSR bundle "
                        "directory) instead of exporting")
    device.add_argument("--benchmark-arg", action="append", default=[], metavar="FLAG",
                        help="extra benchmark_model flag, e.g. --benchmark-arg=--max_secs=60 (repeatable)")
    device.add_argument("--keep", action="store_true", help="leave the pushed models on the device")
    bench.set_defaults(func=cmd_bench)

    train = sub.add_parser("train", help="train a model on a folder of HR images",
                           description="Train on a folder of HR images (PNG/JPEG): LR by MATLAB bicubic "
                           "downscaling, random aligned crops, flips and rotations, the model's recipe.")
    _add_model_args(train)
    train.add_argument("--data", type=Path, required=True, help="folder of HR training images")
    train.add_argument("--val", help="folder (or 'skimage') to evaluate on after training")
    train.add_argument("--iters", type=int, required=True, help="training iterations")
    train.add_argument("--batch", type=int, help="batch size (default: the recipe's)")
    train.add_argument("--patch", type=int, help="LR patch size (default: the recipe's)")
    train.add_argument("--lr", type=float, help="Adam learning rate (default: the recipe's)")
    train.add_argument("--seed", type=int, default=0, help="seed for init, crops and order (default: 0)")
    train.add_argument("--save-every", type=int, default=500, help="checkpoint interval (default: 500)")
    train.add_argument("-o", "--output", type=Path, required=True, help="checkpoint to write (atomically)")
    train.add_argument("--stage", choices=["branches", "classifier", "joint"],
                       help="classsr only: recipe stage (branches, then classifier with frozen branches, then "
                       "joint); start each later stage from the previous one with --weights")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --output")
    train.add_argument("--force", action="store_true", help="start over even if --output exists")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("eval", help="PSNR/SSIM vs bicubic on a folder of HR images",
                              description="PSNR and SSIM on the Y channel (border crop = scale, 8-bit output), "
                              "RGB PSNR, bicubic baseline; on the training graph, the deploy graph or an "
                              "exported .onnx/.tflite file.")
    _add_model_args(evaluate)
    evaluate.add_argument("--data", required=True, help="folder of HR images, or 'skimage' for the bundled "
                          "held-out photos")
    evaluate.add_argument("--graph", choices=["train", "deploy"], default="deploy",
                          help="PyTorch graph to run (default: deploy)")
    evaluate.add_argument("--model-file", type=Path, help="evaluate this exported .onnx or .tflite instead")
    evaluate.add_argument("--json", type=Path, help="write per-image and mean scores as JSON")
    evaluate.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    evaluate.set_defaults(func=cmd_eval)

    upscale = sub.add_parser("upscale", help="super-resolve an image file",
                             description="Upscale any image (grayscale, RGBA, 16-bit, EXIF-rotated), tiled "
                             "with overlap; Y-only models run on Y with bicubic CbCr.")
    upscale.add_argument("image", type=Path, help="input image")
    upscale.add_argument("-o", "--output", type=Path, required=True,
                         help="output image: .png (lossless), .jpg, .webp (lossless), .bmp or .tif")
    _add_model_args(upscale)
    upscale.add_argument("--model-file", type=Path, help="run this exported .onnx or .tflite instead")
    upscale.add_argument("--tile", type=int, default=256, help="LR tile size (default: 256)")
    upscale.add_argument("--overlap", type=int, default=16, help="LR tile overlap (default: 16)")
    upscale.add_argument("--force", action="store_true", help="overwrite an existing output")
    upscale.set_defaults(func=cmd_upscale)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: every failure becomes one line on stderr. Exit codes: 2 user error, 1 tool or
    environment error, 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (temporary files removed first)."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP)}
    interrupts.install()
    try:
        args = build_parser().parse_args(argv)
        return _run(args)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _fail(message: str, code: int) -> int:
    print(f"edgesr: {message}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except UserError as exc:
        return _fail(f"error: {exc}", 2)
    except ToolError as exc:
        return _fail(f"error: {exc}", 1)
    except KeyboardInterrupt:
        return _fail("interrupted (Ctrl-C): temporary files removed, nothing half-written left", 130)
    except Terminated as exc:
        return _fail(f"stopped by {exc}: temporary files removed, nothing half-written left", 128 + exc.signum)
    except MemoryError:
        return _fail("error: out of memory: use smaller inputs (--sizes, --input, --tile) or a smaller variant", 1)
    except OSError as exc:
        return _fail(f"error: {os_error(exc, 'a file operation')}", 1)
    except Exception as exc:  # noqa: BLE001  (the last line of defence: never a traceback)
        if os.environ.get("EDGESR_DEBUG"):
            raise
        text = " ".join(str(exc).split())[:300] or "no message"
        return _fail(f"internal error: {type(exc).__name__}: {text} (a bug in edgesr: please report it with the "
                     "command line; EDGESR_DEBUG=1 shows the traceback)", 1)


if __name__ == "__main__":
    sys.exit(main())
