"""What is inside an exported file: its operators."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def op_counts(path: Path) -> Counter[str]:
    """Operator histogram of a .onnx or .tflite file."""
    path = Path(path)
    if path.suffix == ".onnx":
        from edgesr.export.onnx import onnx_op_counts

        return onnx_op_counts(path)
    from edgesr.export.tflite import tflite_op_counts

    return tflite_op_counts(path)
