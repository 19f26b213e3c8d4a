"""The ECBSR deploy graph rebuilt in Keras (NHWC) with the PyTorch weights copied in.

Built so the TFLite converter emits only CONV_2D, PRELU, ADD and DEPTH_TO_SPACE
(CONCATENATION for the RGB residual), with dynamic height and width and no TRANSPOSE.
"""

from __future__ import annotations

import numpy as np

from edgesr.families.ecbsr.model import ECBSRPlain
from edgesr.layout import depth_to_space_order, oihw_to_hwio
from edgesr.nn.tf import keras, tf


class DepthToSpace(keras.layers.Layer):
    """tf.nn.depth_to_space as a layer (lowers to the native DEPTH_TO_SPACE op)."""

    def __init__(self, block_size: int, **kwargs):
        super().__init__(**kwargs)
        self.block_size = block_size

    def call(self, x):
        return tf.nn.depth_to_space(x, self.block_size)

    def get_config(self) -> dict:
        return {**super().get_config(), "block_size": self.block_size}


def build_keras_ecbsr(plain: ECBSRPlain) -> keras.Model:
    """Keras twin of an ECBSRPlain: same weights, last conv's channels reordered for
    depth_to_space, global residual added before the shuffle (no Resize op)."""
    cfg = plain.config
    lr = keras.Input(shape=(None, None, cfg.colors), batch_size=1, name="lr")
    y = lr
    blocks = list(plain.backbone)
    order = depth_to_space_order(cfg.colors, cfg.scale)
    for index, block in enumerate(blocks):
        weight = block.conv3x3.weight.detach().double().numpy()
        bias = block.conv3x3.bias.detach().double().numpy()
        if index == len(blocks) - 1:
            weight, bias = weight[order], bias[order]
        conv = keras.layers.Conv2D(weight.shape[0], 3, padding="same", name=f"conv{index}")
        y = conv(y)
        conv.set_weights([oihw_to_hwio(weight).astype(np.float32), bias.astype(np.float32)])
        if block.act is not None:
            prelu = keras.layers.PReLU(shared_axes=[1, 2], name=f"prelu{index}")
            y = prelu(y)
            slopes = block.act.weight.detach().numpy().astype(np.float32)
            prelu.set_weights([slopes.reshape(1, 1, -1)])
    # depth_to_space channel t belongs to colour t % C: tiling the input s*s times matches it.
    skip = lr if cfg.colors == 1 else keras.layers.Concatenate(name="skip")([lr] * cfg.scale ** 2)
    y = keras.layers.Add(name="residual")([y, skip])
    sr = DepthToSpace(cfg.scale, name="sr")(y)
    return keras.Model(lr, sr, name=f"ecbsr_{cfg.variant.lower()}_x{cfg.scale}")
