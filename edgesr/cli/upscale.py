"""`edgesr upscale`: super-resolve one image file, tile by tile."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgesr.cli.common import (
    Parser,
    add_json,
    add_model_args,
    at_least,
    check_outputs,
    open_exported,
    prepare,
    progress,
    say,
    write_json,
)
from edgesr.errors import UserError

OUTPUT_FORMATS = {".png": ("PNG", {}), ".jpg": ("JPEG", {"quality": 95}), ".jpeg": ("JPEG", {"quality": 95}),
                  ".webp": ("WEBP", {"lossless": True}), ".bmp": ("BMP", {}), ".tif": ("TIFF", {}),
                  ".tiff": ("TIFF", {})}


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from edgesr.api import Model
    from edgesr.atomic import atomic_output
    from edgesr.data import image_size

    if args.output.is_dir():
        raise UserError(f"output path {args.output} is a directory: pass a file name, e.g. {args.output / 'sr.png'}")
    image_format = OUTPUT_FORMATS.get(args.output.suffix.lower())
    if image_format is None:
        raise UserError(f"output {args.output} is no image type edgesr writes: end it in "
                        f"{', '.join(OUTPUT_FORMATS)} (.png and .webp are lossless)")
    check_outputs(args, args.output, args.json)
    height, width = image_size(args.image)
    if args.model_file:
        runner = open_exported(args, args.model_file)
    else:
        runner = Model(prepare(args))
    progress(f"upscaling {args.image.name} ({width}x{height}) x{runner.io.scale} with {runner.label}")
    out = runner.upscale(args.image, args.tile, args.overlap)
    with atomic_output(args.output, args.force) as tmp:
        Image.fromarray(out).save(tmp, format=image_format[0], **image_format[1])
    say(args, f"wrote {args.output} ({out.shape[1]}x{out.shape[0]})")
    summary = runner.summary() if hasattr(runner, "summary") else None
    if summary:
        say(args, summary)
    write_json(args, {"input": str(args.image), "output": str(args.output), "model": runner.label,
                      "size": [out.shape[1], out.shape[0]], "summary": summary})
    return 0


def add(sub) -> None:
    parser: Parser = sub.add_parser("upscale", help="super-resolve an image file",
                                    description="Upscale any image (grayscale, RGBA, 16-bit, EXIF-rotated), tiled with "
                                    "overlap; Y-only models run on Y with bicubic CbCr.")
    parser.add_argument("image", type=Path, help="input image")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output image: .png (lossless), .jpg, .webp (lossless), .bmp or .tif")
    add_model_args(parser)
    parser.add_argument("--model-file", type=Path, help="run this exported .onnx/.tflite file or bundle instead")
    parser.add_argument("--tile", type=at_least(16), default=256, help="LR tile size (default: 256)")
    parser.add_argument("--overlap", type=at_least(0), default=16, help="LR tile overlap (default: 16; less than "
                        "half a tile)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    add_json(parser, "a summary")
    parser.set_defaults(func=run)
