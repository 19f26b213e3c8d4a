"""Optional dependencies: the runtimes and converters are extras (edgesr[onnx], [tflite], [executorch], [plot]);
a missing one is a one-line error naming the install command."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from edgesr.errors import ToolError

EXTRAS = {"onnx": "ONNX export and ONNX Runtime", "tflite": "TFLite export and LiteRT",
          "plot": "benchmark plots", "executorch": "ExecuTorch .pte export and runtime"}
PROVIDED_BY = {"onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "onnx", "onnxsim": "onnx",
               "tensorflow": "tflite", "keras": "tflite", "ai_edge_litert": "tflite", "flatbuffers": "tflite",
               "matplotlib": "plot", "executorch": "executorch", "torchao": "executorch"}


def _missing(module: str, extra: str) -> ToolError:
    return ToolError(f"{module} is not installed (the '{extra}' extra: {EXTRAS.get(extra, extra)}): "
                     f"pip install 'edgesr[{extra}]'")


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, which the `extra` provides, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _missing(exc.name or module, extra) from None


def require_installed(module: str, extra: str) -> None:
    """Like `require`, without importing `module` yet (its import may be slow or noisy)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError, AttributeError):  # a parent missing, or a module set to None
        found = False
    if not found:
        raise _missing(module, extra)


def missing_extra(exc: ModuleNotFoundError) -> ToolError | None:
    """The one-line error for a missing module an extra provides (None: not one of ours)."""
    extra = PROVIDED_BY.get((exc.name or "").split(".")[0])
    if extra is None:
        return None
    return _missing(exc.name, extra)
