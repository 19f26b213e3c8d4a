"""What is inside an exported file: its operators."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def op_counts(path: Path) -> Counter[str]:
    """Operator histogram of a .onnx, .tflite or .pte file (a .pte: each XNNPACK partition as one)."""
    path = Path(path)
    if path.suffix == ".pte":
        from edgesr.export.pte import pte_op_counts

        return pte_op_counts(path)
    if path.suffix == ".onnx":
        from edgesr.export.onnx import onnx_op_counts

        return onnx_op_counts(path)
    from edgesr.export.tflite import tflite_op_counts

    return tflite_op_counts(path)
