"""Exported ONNX and TFLite files: parity with the training graph, op lists, dynamic H/W."""

import numpy as np
import onnx
import pytest
import torch

from edgesr.errors import ParityError
from edgesr.export import exporter
from edgesr.export.onnx import onnx_op_counts
from edgesr.export.tflite import tflite_op_counts, tflite_weight_dtypes
from edgesr.model_files import open_model


def _parity(prepared, path, precision):
    """The file against the training graph, within its precision's error model."""
    check = exporter.parity(prepared, path, precision)
    assert check.passed, check.problem()
    return check


@pytest.mark.parametrize("fixture", ["tiny_y", "tiny_rgb"])
def test_onnx_export_is_dynamic_simplified_and_exact(fixture, request, tmp_path):
    prepared = request.getfixturevalue(fixture)
    path = tmp_path / "m.onnx"
    exporter.write_graph(prepared, "deploy", "onnx", "fp32", path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[2].dim_param and dims[3].dim_param  # symbolic height and width
    ops = onnx_op_counts(path)
    assert set(ops) <= {"Conv", "PRelu", "Add", "DepthToSpace", "Gather"}
    assert ops["DepthToSpace"] == 1 and ops["Conv"] == len(prepared.deploy.backbone)
    _parity(prepared, path, "fp32")


@pytest.mark.parametrize("fixture", ["tiny_y", "tiny_rgb"])
def test_tflite_fp32_is_native_ops_true_fp32_and_exact(fixture, request, tmp_path):
    prepared = request.getfixturevalue(fixture)
    path = tmp_path / "m.tflite"
    exporter.write_graph(prepared, "deploy", "tflite", "fp32", path)
    ops = tflite_op_counts(path)
    assert "TRANSPOSE" not in ops and "DEQUANTIZE" not in ops
    assert {"CONV_2D", "PRELU", "ADD", "DEPTH_TO_SPACE"} <= set(ops)
    assert tflite_weight_dtypes(path) == {"float32"}
    _parity(prepared, path, "fp32")


def test_tflite_fp16_stores_half_weights_within_its_model(tiny_y, tmp_path):
    """fp16 weights move the output (max-abs > 0) exactly as the model with fp16-rounded weights says."""
    path = tmp_path / "m.tflite"
    exporter.write_graph(tiny_y, "deploy", "tflite", "fp16", path)
    assert "float16" in tflite_weight_dtypes(path)
    assert "TRANSPOSE" not in tflite_op_counts(path)
    check = _parity(tiny_y, path, "fp16")
    assert check.stats.max_abs > 100 * check.deviation


def test_tflite_int8_is_fully_quantized_within_its_model(tiny_y, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    path = tmp_path / "m.tflite"
    exporter.write_graph(tiny_y, "deploy", "tflite", "int8", path)
    interpreter = Interpreter(model_path=str(path))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    ops = tflite_op_counts(path)
    assert "TRANSPOSE" not in ops and "DEQUANTIZE" not in ops
    _parity(tiny_y, path, "int8")


def test_export_verified_writes_report_and_file(tiny_y, tmp_path):
    out = tmp_path / "out" / "m.tflite"
    report = exporter.export(tiny_y, "tflite", "fp32", out)
    assert out.is_file() and report.size_bytes == out.stat().st_size
    assert report.parity.passed and report.parity.reference == "train"
    assert report.files[0].macs_per_pixel == 9 * (1 * 8 + 2 * 8 * 8 + 8 * 9)
    assert [p.name for p in out.parent.iterdir()] == ["m.tflite"]


def test_failed_parity_leaves_no_file(tiny_rgb, tmp_path, monkeypatch):
    """A wrong (PixelShuffle) channel order in the converted RGB graph is caught; nothing is written."""
    from edgesr.nn import keras as keras_layers

    monkeypatch.setattr(keras_layers, "depth_to_space_order", lambda colors, scale: list(range(colors * scale ** 2)))
    out = tmp_path / "bad.tflite"
    with pytest.raises(ParityError, match="no file written"):
        exporter.export(tiny_rgb, "tflite", "fp32", out)
    assert list(tmp_path.iterdir()) == []


def test_tflite_runs_after_resizing_to_several_shapes(tiny_y, tmp_path):
    path = tmp_path / "m.tflite"
    exporter.write_graph(tiny_y, "deploy", "tflite", "fp32", path)
    graph = open_model(path)
    for h, w in [(8, 8), (45, 13), (8, 8)]:
        x = np.random.default_rng(h).random((1, 1, h, w)).astype(np.float32) * 255
        with torch.no_grad():
            ref = tiny_y.train(torch.from_numpy(x)).numpy()
        assert graph(x).shape == ref.shape == (1, 1, 3 * h, 3 * w)
