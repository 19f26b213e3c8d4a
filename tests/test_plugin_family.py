"""A fifth family written outside edgesr, as a plugin would: a class with the interface's hooks,
registered, then exported to ONNX and TFLite and verified by the generic toolchain (no edits to
edgesr). ToySR trains two parallel 3x3 convs and deploys their sum as one (ECBSR's idea, small)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn as nn

import edgesr
from edgesr import family as family_registry
from edgesr.api import Model
from edgesr.deployable import single_graph
from edgesr.errors import ParityError
from edgesr.family import DataclassConfig, Family, Recipe, register
from edgesr.fold import sum_kernels
from edgesr.layout import depth_to_space_order
from edgesr.model import Prepared
from edgesr.resources import Footprint


@dataclass(frozen=True)
class ToyConfig(DataclassConfig):
    """C channels; always x2, Y in 0..1."""

    channels: int = 4
    scale, colors, pixel_range = 2, 1, 1.0  # class constants, not fields

    @property
    def variant(self) -> str:
        return f"C{self.channels}"


class ToyDeploy(nn.Module):
    """conv3x3, ReLU, conv3x3 to s*s channels, PixelShuffle."""

    def __init__(self, c: ToyConfig):
        super().__init__()
        self.head, self.tail = nn.Conv2d(c.colors, c.channels, 3, padding=1), nn.Conv2d(c.channels, c.scale ** 2, 3,
                                                                                       padding=1)
        self.config = c

    def forward(self, x):
        return nn.functional.pixel_shuffle(self.tail(torch.relu(self.head(x))), self.config.scale)


class ToyTrain(ToyDeploy):
    """The same with a second, parallel head conv (summed): re-parameterized by adding kernels."""

    def __init__(self, c: ToyConfig):
        super().__init__(c)
        self.head2 = nn.Conv2d(c.colors, c.channels, 3, padding=1)

    def forward(self, x):
        return nn.functional.pixel_shuffle(self.tail(torch.relu(self.head(x) + self.head2(x))), self.config.scale)


class ToyFamily(Family):
    name, summary, presets, scales, default_variant = "toysr", "a toy plugin family", ("C4",), (2,), "C4"
    default_scale, default_pixel_range, recipe = 2, 1.0, Recipe(lr=1e-3, batch=4, hr_patch={2: 32})

    def parse_variant(self, variant, scale, pixel_range):
        return ToyConfig(int(variant.removeprefix("C")))

    def config_from_state_dict(self, state_dict, pixel_range):
        return ToyConfig(state_dict["head.weight"].shape[0])

    def footprint(self, config):
        return Footprint(20 * config.channels * 9, 3)

    def training_graph(self, config):
        return ToyTrain(config)

    def deployable(self, train):
        deploy = ToyDeploy(train.config)
        weight, bias = sum_kernels([(train.head.weight, train.head.bias), (train.head2.weight, train.head2.bias)])
        deploy.load_state_dict({"head.weight": weight.float(), "head.bias": bias.float(),
                                "tail.weight": train.tail.weight, "tail.bias": train.tail.bias})
        return single_graph(self, train.config, deploy)

    def keras_twin(self, graph, spec, config):
        from edgesr.nn.keras import DepthToSpace, conv_like
        from edgesr.nn.tf import keras

        lr = keras.Input(shape=(None, None, 1), batch_size=1, name="lr")
        y = conv_like(spec.module.head, "head", "relu")(lr)
        y = conv_like(spec.module.tail, "tail", order=depth_to_space_order(1, config.scale))(y)
        return keras.Model(lr, DepthToSpace(config.scale, name="sr")(y))


@pytest.fixture
def toysr(monkeypatch):
    """ToySR registered for one test (the registry is restored afterwards), with weights whose
    head biases make ReLU cut through a photo's values."""
    monkeypatch.setattr(family_registry, "_REGISTRY", dict(family_registry._REGISTRY))
    register(ToyFamily)
    torch.manual_seed(0)
    train = ToyTrain(ToyConfig()).eval()
    with torch.no_grad():
        train.head.bias.copy_(torch.linspace(-0.6, 0.2, 4))
    return Model(Prepared.of(train, "toysr", "toy weights"))


def test_a_plugin_family_exports_to_onnx_and_tflite_and_verifies(toysr, tmp_path):
    assert "toysr" in [f.name for f in edgesr.available_families()]
    with pytest.warns(edgesr.RandomWeightsWarning):  # by name, as any built-in
        assert edgesr.load("toysr").label == "toysr C4 x2"
    for fmt in ("onnx", "tflite"):
        report = toysr.export(fmt, out=tmp_path / f"toy.{fmt}")
        assert report.parity.passed and report.parity.used < 1 and report.files[0].params == 4 * 9 + 4 + 4 * 4 * 9 + 4
        opened = edgesr.open_model(tmp_path / f"toy.{fmt}")
        assert opened.metadata["family"] == "toysr" and opened(np.zeros((1, 1, 8, 8), np.float32)).shape == (1, 1, 16,
                                                                                                         16)
    verified = toysr.verify(precisions=["fp32", "fp16", "int8"], sizes=[(24, 20)])
    assert verified.passed and {c.candidate for c in verified.checks} >= {"deploy", "onnx-fp32", "tflite-int8"}


class WrongFold(ToyFamily):
    """ToySR with a fold that forgets the second head's bias."""

    name = "toysr_wrong"

    def deployable(self, train):
        deployable = super().deployable(train)
        with torch.no_grad():
            deployable.graphs["deploy"].module.head.bias.sub_(train.head2.bias)
        return deployable


def test_a_wrong_fold_in_a_plugin_is_caught(toysr, tmp_path):
    """The generic checks hold a plugin to the same bound: a fold off by one bias fails, before
    anything is written."""
    register(WrongFold)
    wrong = Model(Prepared.of(toysr.train, "toysr_wrong", "toy weights"))
    assert not wrong.verify(precisions=["fp32"], sizes=[(24, 20)]).passed
    with pytest.raises(ParityError):
        wrong.export("onnx", out=tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []
