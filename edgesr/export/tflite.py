"""Keras model -> .tflite bytes at fp32, fp16 (float16 weights) or full int8."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Delegation:
    """How LiteRT's default delegate (XNNPACK) takes a .tflite file: in how many partitions, and
    which ops it leaves to TFLite's own kernels (each one a partition boundary, often one thread)."""

    ops: int
    partitions: int
    outside: Counter

    @property
    def complete(self) -> bool:
        return not self.outside

    def format(self) -> str:
        parts = f"{self.partitions} partition{'s' if self.partitions != 1 else ''}"
        if self.complete:
            return f"all {self.ops} ops in XNNPACK ({parts})"
        left = ", ".join(f"{k} x{v}" for k, v in self.outside.most_common())
        return f"{self.ops - sum(self.outside.values())} of {self.ops} ops in XNNPACK ({parts}); outside: {left}"

    def to_dict(self) -> dict:
        return {"ops": self.ops, "partitions": self.partitions, "outside": dict(self.outside)}


def _delegated_nodes(path: Path, fuse: bool) -> list[dict]:
    """The node list after LiteRT applied XNNPACK (nodes fused into partitions, or one delegate per node)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), experimental_disable_delegate_node_fusion=not fuse)
    detail = interpreter.get_input_details()[0]
    signature = list(detail["shape_signature"])
    if len(signature) == 4 and -1 in signature:  # dynamic H, W: any even size will do
        interpreter.resize_tensor_input(detail["index"], [1, 64, 64, signature[3]], strict=False)
    with captured_output("LiteRT allocate_tensors"):
        interpreter.allocate_tensors()
    return interpreter._get_ops_details()


def xnnpack_delegation(path: Path) -> Delegation:
    """Count partitions with node fusion on; with it off every delegated node is its own DELEGATE
    node, so an original node whose outputs no DELEGATE node produces stayed outside."""
    partitions = sum(op["op_name"] == "DELEGATE" for op in _delegated_nodes(path, fuse=True))
    nodes = _delegated_nodes(path, fuse=False)
    delegated = {tuple(op["outputs"]) for op in nodes if op["op_name"] == "DELEGATE"}
    original = [op for op in nodes if op["op_name"] != "DELEGATE"]
    outside = Counter(op["op_name"] for op in original if tuple(op["outputs"]) not in delegated)
    return Delegation(len(original), partitions, outside)
