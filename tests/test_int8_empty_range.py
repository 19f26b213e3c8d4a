"""An int8 file in which a tensor held 0 on every calibration image: the converter gives it an
empty range (scale 2e-6/255), XNNPACK cannot prepare a convolution that writes it, and the user
gets one line naming the tensor and what to export instead (not an internal error)."""

from __future__ import annotations

import numpy as np
import pytest

from edgesr.atomic import atomic_directory, atomic_output, published_name
from edgesr.errors import ToolError
from edgesr.export.tflite import convert_keras
from edgesr.runners import TfliteGraph, empty_int8_ranges, litert_reason


def _sliced_path_model(threshold: float):
    """x -> conv -> [relu, relu(. - threshold)] -> the second half -> conv 'after' -> + x. With
    threshold 1000 the second half is 0 on images in [0, 1], but the slice keeps the concat's range:
    'after' reads a real range and writes an empty one, as SMSR's sparse conv does when its mask
    is never on."""
    from edgesr.nn.tf import keras, tf

    x = keras.Input((None, None, 2))
    on = keras.layers.Conv2D(4, 3, padding="same", name="on")(x)
    off = keras.layers.Lambda(lambda t: tf.nn.relu(t - threshold), name="gated")(on)
    both = keras.layers.Concatenate(name="both")([keras.layers.ReLU()(on), off])
    part = keras.layers.Lambda(lambda t: t[..., 4:], name="second_half")(both)
    y = keras.layers.Conv2D(2, 3, padding="same", name="after")(part)
    return keras.Model(x, keras.layers.Add()([y, x]))


@pytest.fixture(scope="module")
def calibration():
    rng = np.random.default_rng(0)
    return [rng.random((1, 16, 16, 2), dtype=np.float32) for _ in range(4)]


@pytest.mark.parametrize("reader", ["run", "stored tensors"])
def test_an_empty_int8_range_is_one_line_naming_the_tensor(calibration, tmp_path, reader):
    """Both ways edgesr reads an int8 file: running it, and reading every stored int8 tensor for the
    error model (an interpreter that keeps all tensors, where XNNPACK refuses while allocating)."""
    path = tmp_path / "never_on.tflite"
    path.write_bytes(convert_keras(_sliced_path_model(1000.0), "int8", calibration))
    x = np.zeros((1, 2, 16, 16), np.float32)
    with pytest.raises(ToolError) as caught:
        TfliteGraph(path)(x) if reader == "run" else TfliteGraph(path).stored_int8_tensors(x)
    message = str(caught.value)
    assert "\n" not in message and "never_on.tflite" in message and "failed: " not in message
    assert "after" in message and "empty int8 range" in message and "fp32 or fp16" in message


def test_a_path_the_calibration_uses_converts_to_a_file_that_runs(calibration, tmp_path):
    path = tmp_path / "used.tflite"
    path.write_bytes(convert_keras(_sliced_path_model(0.0), "int8", calibration))
    graph = TfliteGraph(path)
    assert empty_int8_ranges(graph.interpreter) == []
    out = graph(calibration[0].transpose(0, 3, 1, 2))
    assert out.shape == (1, 2, 16, 16) and np.isfinite(out).all()


def test_a_temporary_output_is_named_by_the_name_it_will_be_published_under(tmp_path):
    with atomic_output(tmp_path / "model.tflite") as tmp:
        assert tmp.name != "model.tflite" and published_name(tmp) == "model.tflite"
    with atomic_directory(tmp_path / "bundle") as tmp:
        assert published_name(tmp) == "bundle"
    assert published_name(tmp_path / "plain.onnx") == "plain.onnx"


def test_litert_repeats_are_collapsed_before_the_line_is_shortened_so_the_failing_node_stays():
    """LiteRT's text for the shipped SplitSR's int8 file: six unseparated repeats, then the node."""
    raw = "failed to create XNNPACK runtime" * 6 + "Node number 185 (TfLiteXNNPackDelegate) failed to prepare."
    assert litert_reason(RuntimeError(raw)) == ("failed to create XNNPACK runtime; "
                                                "Node number 185 (TfLiteXNNPackDelegate) failed to prepare")
    assert litert_reason(RuntimeError("out of memory." * 60)) == "out of memory"
    counted = ", ".join(str(i) for i in range(200))  # nothing repeats: only shortened
    assert litert_reason(RuntimeError(counted)) == counted[:200]
    assert litert_reason(RuntimeError("")) == "RuntimeError"
