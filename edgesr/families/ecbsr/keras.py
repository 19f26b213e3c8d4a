"""The ECBSR deploy graph rebuilt in Keras (NHWC) with the PyTorch weights copied in.

Built so the TFLite converter emits only CONV_2D, PRELU, ADD and DEPTH_TO_SPACE
(CONCATENATION for the RGB residual), with dynamic height and width and no TRANSPOSE.
"""

from __future__ import annotations

from edgesr.families.ecbsr.model import ECBSRPlain
from edgesr.layout import depth_to_space_order
from edgesr.nn.keras import DepthToSpace, conv_like, prelu_like
from edgesr.nn.tf import keras


def build_keras_ecbsr(plain: ECBSRPlain) -> keras.Model:
    """Keras twin of an ECBSRPlain: same weights, last conv's channels reordered for
    depth_to_space, global residual added before the shuffle (no Resize op)."""
    cfg = plain.config
    lr = keras.Input(shape=(None, None, cfg.colors), batch_size=1, name="lr")
    y = lr
    blocks = list(plain.backbone)
    order = depth_to_space_order(cfg.colors, cfg.scale)
    for index, block in enumerate(blocks):
        last = index == len(blocks) - 1
        y = conv_like(block.conv3x3, f"conv{index}", order=order if last else None)(y)
        if block.act is not None:
            y = prelu_like(block.act, f"prelu{index}")(y)
    # depth_to_space channel t belongs to colour t % C: tiling the input s*s times matches it.
    skip = lr if cfg.colors == 1 else keras.layers.Concatenate(name="skip")([lr] * cfg.scale ** 2)
    y = keras.layers.Add(name="residual")([y, skip])
    sr = DepthToSpace(cfg.scale, name="sr")(y)
    return keras.Model(lr, sr, name=f"ecbsr_{cfg.variant.lower()}_x{cfg.scale}")
