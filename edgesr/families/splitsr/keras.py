"""The SplitSR deploy graph rebuilt in Keras (NHWC) with the PyTorch weights copied in.

Built so the TFLite converter emits native ops only, with dynamic height and width and no
TRANSPOSE: ADD (input offset, residuals), CONV_2D (ReLU fused), SPLIT_V + CONCATENATION
(SplitSRBlocks), MEAN + CONV_2D + LOGISTIC + MUL (channel attention), DEPTH_TO_SPACE.

Channel order: every conv that feeds a shuffle has its output channels permuted by
`depth_to_space_order(C, s)` so TF's depth_to_space reproduces torch's PixelShuffle; for x4
each of the two x2 stages gets its own permutation. A shuffle's output has the C feature
channels in the same order in both frameworks, so the conv after it is copied unchanged.
The split/concat works on the channel axis, which is last in NHWC: the slice boundaries are
the same channel indices as in PyTorch.
"""

from __future__ import annotations

import re

import numpy as np
import torch.nn as nn

from edgesr.families.ecbsr.keras import DepthToSpace
from edgesr.families.splitsr.model import RCAB, SplitSRBlock, SplitSRPlain
from edgesr.layout import depth_to_space_order, oihw_to_hwio
from edgesr.nn.tf import keras, tf


class AddConstant(keras.layers.Layer):
    """x + a fixed per-channel constant (lowers to one ADD)."""

    def __init__(self, value, **kwargs):
        super().__init__(**kwargs)
        self.value = [float(v) for v in np.asarray(value).reshape(-1)]

    def call(self, x):
        return x + tf.constant(np.asarray(self.value, dtype=np.float32).reshape(1, 1, 1, -1))

    def get_config(self) -> dict:
        return {**super().get_config(), "value": self.value}


class ChannelSplit(keras.layers.Layer):
    """tf.split on the channel axis (lowers to SPLIT_V): [first sizes[0] channels, the rest]."""

    def __init__(self, sizes, **kwargs):
        super().__init__(**kwargs)
        self.sizes = [int(s) for s in sizes]

    def call(self, x):
        return tf.split(x, self.sizes, axis=-1)

    def compute_output_shape(self, input_shape):
        return [(*input_shape[:-1], s) for s in self.sizes]

    def get_config(self) -> dict:
        return {**super().get_config(), "sizes": self.sizes}


class SpatialMean(keras.layers.Layer):
    """Global average pool keeping dims, (1, H, W, C) -> (1, 1, 1, C) (lowers to MEAN)."""

    def call(self, x):
        return tf.reduce_mean(x, axis=[1, 2], keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, 1, input_shape[-1])


class ChannelScale(keras.layers.Layer):
    """features (1, H, W, C) times per-channel weights (1, 1, 1, C) (lowers to MUL)."""

    def call(self, inputs):
        features, weights = inputs
        return features * weights

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def _conv(layer: nn.Conv2d, name: str, activation: str | None = None, order: list[int] | None = None):
    """A Keras Conv2D carrying a torch conv's weights (output channels reordered by `order`)."""
    weight = layer.weight.detach().double().numpy()
    bias = layer.bias.detach().double().numpy()
    if order is not None:
        weight, bias = weight[order], bias[order]
    conv = keras.layers.Conv2D(weight.shape[0], weight.shape[2], padding="same", activation=activation, name=name)
    conv.build((1, None, None, weight.shape[1]))
    conv.set_weights([oihw_to_hwio(weight).astype(np.float32), bias.astype(np.float32)])
    return conv


def _split_block(x, block: SplitSRBlock, name: str):
    convs = [block.body[0], block.body[2]]
    if block.active == block.channels:
        active, passive = x, None
    else:
        active, passive = ChannelSplit([block.active, block.channels - block.active], name=f"{name}_split")(x)
    y = _conv(convs[0], f"{name}_conv0", "relu")(active)
    y = _conv(convs[1], f"{name}_conv1")(y)
    y = keras.layers.Add(name=f"{name}_res")([y, active])
    if passive is None:
        return y
    return keras.layers.Concatenate(axis=-1, name=f"{name}_cat")([passive, y])  # processed slice last


def _rcab(x, block: RCAB, name: str):
    conv0, _, conv1, ca = block.body
    y = _conv(conv0, f"{name}_conv0", "relu")(x)
    y = _conv(conv1, f"{name}_conv1")(y)
    w = SpatialMean(name=f"{name}_ca_pool")(y)
    w = _conv(ca.conv_du[0], f"{name}_ca_down", "relu")(w)
    w = _conv(ca.conv_du[2], f"{name}_ca_up", "sigmoid")(w)
    y = ChannelScale(name=f"{name}_ca_mul")([y, w])
    return keras.layers.Add(name=f"{name}_res")([y, x])


def build_keras_splitsr(plain: SplitSRPlain) -> keras.Model:
    """Keras twin of a SplitSRPlain: same weights, upsampler convs reordered for depth_to_space."""
    cfg = plain.config
    lr = keras.Input(shape=(None, None, cfg.colors), batch_size=1, name="lr")
    x = AddConstant(plain.input_offset.detach().double().numpy(), name="input_offset")(lr)
    x = _conv(plain.head[0], "head")(x)
    y = x
    *groups, body_conv = list(plain.body)
    for g, group in enumerate(groups):
        *blocks, group_conv = list(group.body)
        z = y
        for b, block in enumerate(blocks):
            name = f"g{g}_b{b}"
            z = _split_block(z, block, name) if isinstance(block, SplitSRBlock) else _rcab(z, block, name)
        z = _conv(group_conv, f"g{g}_conv")(z)
        y = keras.layers.Add(name=f"g{g}_res")([z, y])
    y = _conv(body_conv, "body_conv")(y)
    y = keras.layers.Add(name="long_skip")([y, x])
    upsampler, tail_conv = plain.tail
    layers = list(upsampler)
    for stage in range(len(layers) // 2):
        conv, shuffle = layers[2 * stage], layers[2 * stage + 1]
        s = shuffle.upscale_factor
        y = _conv(conv, f"up{stage}_conv", order=depth_to_space_order(cfg.channels, s))(y)
        y = DepthToSpace(s, name=f"up{stage}_shuffle")(y)
    sr = _conv(tail_conv, "tail")(y)
    return keras.Model(lr, sr, name=re.sub(r"[^a-z0-9]+", "_", f"splitsr_{cfg.variant.lower()}_x{cfg.scale}"))
