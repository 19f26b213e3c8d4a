"""Optional dependencies: the runtimes and converters are extras (edgesr[onnx], [tflite], [plot]);
a missing one is a one-line error naming the install command."""

from __future__ import annotations

import importlib
from types import ModuleType

from edgesr.errors import ToolError

EXTRAS = {"onnx": "ONNX export and ONNX Runtime", "tflite": "TFLite export and LiteRT",
          "plot": "benchmark plots"}


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, which the `extra` provides, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ToolError(f"{EXTRAS.get(extra, extra)} needs the '{extra}' extra ({exc.name or module} is not "
                        f"installed): pip install 'edgesr[{extra}]'") from None
