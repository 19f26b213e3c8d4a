"""`edgesr inspect FILE`: what an exported file or bundle says about itself."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgesr.cli.common import Parser, add_json, say, write_json
from edgesr.errors import UserError


def run(args: argparse.Namespace) -> int:
    from edgesr import bundle, metadata
    from edgesr.export.inspect import op_counts

    path = args.file
    if path.is_dir():
        meta = bundle.read_manifest(path)
        files = {entry["name"]: path / entry["file"] for entry in meta["graphs"]}
    elif path.is_file():
        if path.suffix not in bundle.SUFFIXES.values():
            raise UserError(f"{path} is no {', '.join(bundle.SUFFIXES.values())} file or bundle folder")
        meta = metadata.read(path)
        files = {"deploy": path}
    else:
        raise UserError(f"{path} not found")
    if meta is None:
        say(args, f"{path}: no edgesr metadata (a file another tool wrote): its input and scale are not recorded")
    else:
        io = meta["io"]
        say(args, f"{path}: {meta['family']} {meta['variant']} x{io['scale']}, {io['color_space']} in "
                  f"0..{io['pixel_range']:g}, {meta['precision']}; input '{io['input']}' NCHW/NHWC float -> "
                  f"output '{io['output']}'")
        say(args, f"  written by edgesr {meta.get('edgesr_version')} from weights {meta.get('weights')} "
                  f"(sha256 {meta.get('checkpoint_sha256') or '-'})")
        for check in meta.get("parity", []):
            say(args, f"  parity   {check['reference']} vs {check['candidate']}: max-abs {check['max_abs']:.3g}, "
                      f"deviation {check['deviation']:.3g} (bound {check['bound']:.3g}, {100 * check['used']:.0f}% "
                      f"used): {check['result']}")
    ops = {}
    for name, file in files.items():
        ops[name] = dict(op_counts(file))
        label = "" if name == "deploy" else f"{name:<12} "
        say(args, f"  {label}{file.name}: {file.stat().st_size / 1024:.1f} KiB, ops "
                  f"{', '.join(f'{k} x{v}' for k, v in sorted(ops[name].items(), key=lambda kv: -kv[1]))}")
    write_json(args, {"path": str(path), "metadata": meta, "ops": ops})
    return 0


def add(sub) -> None:
    parser: Parser = sub.add_parser("inspect", help="show what an exported file or bundle is",
                                    description="Print the metadata an exported file carries (model, scale, colour "
                                    "space, pixel range, tensor names, edgesr version, checkpoint SHA-256, parity "
                                    "measured at export) and its operators.")
    parser.add_argument("file", type=Path, help="an exported .onnx, .tflite or .pte file, or a bundle folder")
    add_json(parser, "the metadata")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    parser.set_defaults(func=run)
