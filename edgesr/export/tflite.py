"""Keras model -> .tflite bytes at fp32, fp16 (float16 weights) or full int8."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgesr.quiet import captured_output

PRECISIONS = ("fp32", "fp16", "int8")


def convert_keras(model, precision: str, calibration: list[np.ndarray] | None = None) -> bytes:
    """Convert with TFLiteConverter. fp32 applies no optimization at all (weights stay fp32);
    int8 quantizes weights, activations and the I/O tensors using `calibration` (NHWC batches)."""
    from edgesr.nn.tf import tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        if not calibration:
            raise ValueError("int8 conversion needs calibration images")

        def representative() -> Iterator[list[np.ndarray]]:
            for batch in calibration:
                yield [batch.astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif precision != "fp32":
        raise ValueError(f"unknown precision {precision}")
    with captured_output(f"TFLite {precision} conversion"):
        return converter.convert()


def tflite_op_counts(path: Path) -> Counter[str]:
    """Builtin operator names of a .tflite file and how often each occurs."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    return Counter(op["op_name"] for op in interpreter._get_ops_details())


def tflite_weight_dtypes(path: Path) -> set[str]:
    """dtypes of the constant tensors (weights/biases) stored in a .tflite file."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    dtypes = set()
    for tensor in interpreter.get_tensor_details():
        try:
            interpreter.get_tensor(tensor["index"])
        except ValueError:
            continue
        if len(tensor["shape"]) and tensor["name"] and "conv" in tensor["name"].lower():
            dtypes.add(np.dtype(tensor["dtype"]).name)
    return dtypes


def tflite_file_facts(path: Path) -> tuple[str, int]:
    """(precision, colours) of a .tflite file without edgesr metadata, from its tensors."""
    from ai_edge_litert.interpreter import Interpreter

    from edgesr.errors import ToolError

    try:
        detail = Interpreter(model_path=str(path)).get_input_details()[0]
    except Exception as exc:  # noqa: BLE001  (LiteRT's own exception types)
        raise ToolError(f"LiteRT cannot load {path}: {' '.join(str(exc).split())[:160]}: is it a complete file "
                        "written by 'edgesr export'?") from None
    if detail["dtype"] == np.int8:
        return "int8", int(detail["shape_signature"][-1])
    return ("fp16" if "float16" in tflite_weight_dtypes(path) else "fp32"), int(detail["shape_signature"][-1])
