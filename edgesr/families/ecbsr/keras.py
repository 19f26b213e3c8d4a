"""The ECBSR deploy graph rebuilt in Keras (NHWC) with the PyTorch weights copied in.

Built so the TFLite converter emits only CONV_2D, PRELU, ADD and DEPTH_TO_SPACE
(CONCATENATION for the RGB residual), with dynamic height and width and no TRANSPOSE.
"""

from __future__ import annotations

from edgesr.nn.ecb import ECBSRPlain
from edgesr.nn.keras import ecb_network
from edgesr.nn.tf import keras


def build_keras_ecbsr(plain: ECBSRPlain) -> keras.Model:
    """Keras twin of an ECBSRPlain (any height and width, batch 1)."""
    cfg = plain.config
    lr = keras.Input(shape=(None, None, cfg.colors), batch_size=1, name="lr")
    return keras.Model(lr, ecb_network(lr, plain), name=f"ecbsr_{cfg.variant.lower()}_x{cfg.scale}")
