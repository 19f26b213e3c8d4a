"""PyTorch deploy graph -> ONNX with dynamic H/W, simplified by onnxsim, checked by onnx.checker."""

from __future__ import annotations

import tempfile
import warnings
from collections import Counter
from pathlib import Path

import onnx
import torch
import torch.nn as nn

from edgesr.quiet import captured_output

OPSET = 18


def export_onnx(module: nn.Module, path: Path, colors: int, opset: int = OPSET,
                example_shape: tuple[int, int, int, int] | None = None,
                dynamic_dims: dict[int, str] | None = None, output_name: str = "sr") -> None:
    """Write `module` (NCHW float32 in -> out) to `path` with symbolic height/width, or with the
    `dynamic_dims` given (e.g. {0: "batch"} for fixed-size tiles; the example batch must then be >= 2)."""
    import onnxsim

    example = torch.rand(*(example_shape or (1, colors, 32, 40)))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = Path(tmp) / "raw.onnx"
        with captured_output("torch.onnx.export"):
            torch.onnx.export(module.eval(), (example,), str(raw), dynamo=True, opset_version=opset,
                              input_names=["lr"], output_names=[output_name], verbose=False,
                              dynamic_shapes=(dynamic_dims or {2: "height", 3: "width"},))
        model = onnx.load(str(raw))
    with captured_output("onnxsim"):
        simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise RuntimeError("onnxsim could not validate the simplified ONNX graph")
    onnx.checker.check_model(simplified, full_check=True)
    onnx.save(simplified, str(path))


def onnx_op_counts(path: Path) -> Counter[str]:
    """ONNX node types of a file and how often each occurs."""
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)
