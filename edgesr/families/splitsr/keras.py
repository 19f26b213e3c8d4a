"""The SplitSR deploy graph rebuilt in Keras (NHWC) with the PyTorch weights copied in.

Built so the TFLite converter emits native ops only, with dynamic height and width and no
TRANSPOSE: ADD (input offset, residuals), CONV_2D (ReLU fused), SPLIT_V + CONCATENATION
(SplitSRBlocks), MEAN + CONV_2D + LOGISTIC + MUL (channel attention), DEPTH_TO_SPACE; -BIC
variants: the bicubic residual as SMSR's (replicate padding by slicing + CONCATENATION, the
fixed 5x5 phase CONV_2D, DEPTH_TO_SPACE, ADD).

Channel order: every conv that feeds a shuffle has its output channels permuted by
`depth_to_space_order(C, s)` so TF's depth_to_space reproduces torch's PixelShuffle; for x4
each of the two x2 stages gets its own permutation. A shuffle's output has the C feature
channels in the same order in both frameworks, so the conv after it is copied unchanged.
The split/concat works on the channel axis, which is last in NHWC: the slice boundaries are
the same channel indices as in PyTorch.
"""

from __future__ import annotations

import re

from edgesr.families.splitsr.model import RCAB, SplitSRBlock, SplitSRPlain
from edgesr.layout import depth_to_space_order
from edgesr.nn.keras import (
    AddConstant,
    ChannelScale,
    ChannelSplit,
    DepthToSpace,
    ReplicatePad2,
    SpatialMean,
    conv2d,
    conv_like,
    float64_array,
)
from edgesr.nn.tf import keras


def _split_block(x, block: SplitSRBlock, name: str):
    convs = [block.body[0], block.body[2]]
    if block.active == block.channels:
        active, passive = x, None
    else:
        active, passive = ChannelSplit([block.active, block.channels - block.active], name=f"{name}_split")(x)
    y = conv_like(convs[0], f"{name}_conv0", "relu")(active)
    y = conv_like(convs[1], f"{name}_conv1")(y)
    y = keras.layers.Add(name=f"{name}_res")([y, active])
    if passive is None:
        return y
    return keras.layers.Concatenate(axis=-1, name=f"{name}_cat")([passive, y])  # processed slice last


def _rcab(x, block: RCAB, name: str):
    conv0, _, conv1, ca = block.body
    y = conv_like(conv0, f"{name}_conv0", "relu")(x)
    y = conv_like(conv1, f"{name}_conv1")(y)
    w = SpatialMean(name=f"{name}_ca_pool")(y)
    w = conv_like(ca.conv_du[0], f"{name}_ca_down", "relu")(w)
    w = conv_like(ca.conv_du[2], f"{name}_ca_up", "sigmoid")(w)
    y = ChannelScale(name=f"{name}_ca_mul")([y, w])
    return keras.layers.Add(name=f"{name}_res")([y, x])


def build_keras_splitsr(plain: SplitSRPlain) -> keras.Model:
    """Keras twin of a SplitSRPlain: same weights, upsampler convs reordered for depth_to_space."""
    cfg = plain.config
    lr = keras.Input(shape=(None, None, cfg.colors), batch_size=1, name="lr")
    shifted = AddConstant(float64_array(plain.input_offset), name="input_offset")(lr)
    x = conv_like(plain.head[0], "head")(shifted)
    y = x
    *groups, body_conv = list(plain.body)
    for g, group in enumerate(groups):
        *blocks, group_conv = list(group.body)
        z = y
        for b, block in enumerate(blocks):
            name = f"g{g}_b{b}"
            z = _split_block(z, block, name) if isinstance(block, SplitSRBlock) else _rcab(z, block, name)
        z = conv_like(group_conv, f"g{g}_conv")(z)
        y = keras.layers.Add(name=f"g{g}_res")([z, y])
    y = conv_like(body_conv, "body_conv")(y)
    y = keras.layers.Add(name="long_skip")([y, x])
    upsampler, tail_conv = plain.tail
    layers = list(upsampler)
    for stage in range(len(layers) // 2):
        conv, shuffle = layers[2 * stage], layers[2 * stage + 1]
        s = shuffle.upscale_factor
        y = conv_like(conv, f"up{stage}_conv", order=depth_to_space_order(cfg.channels, s))(y)
        y = DepthToSpace(s, name=f"up{stage}_shuffle")(y)
    sr = conv_like(tail_conv, "tail")(y)
    if cfg.bicubic_skip:
        order = depth_to_space_order(cfg.colors, cfg.scale)
        padded = ReplicatePad2(name="bicubic_pad")(shifted)
        phases = conv2d(plain.bicubic[order], None, "bicubic", padding="valid")(padded)
        sr = keras.layers.Add(name="bicubic_add")([sr, DepthToSpace(cfg.scale, name="bicubic_shuffle")(phases)])
    return keras.Model(lr, sr, name=re.sub(r"[^a-z0-9]+", "_", f"splitsr_{cfg.variant.lower()}_x{cfg.scale}"))
