"""Keras building blocks shared by the families' Keras twins (NHWC), each lowering to one
native TFLite op, and converters that copy PyTorch weights into Keras layers."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from edgesr.layout import depth_to_space_order, oihw_to_hwio
from edgesr.nn.tf import keras, tf


def float64_array(t: torch.Tensor | np.ndarray) -> np.ndarray:
    """A weight as a float64 numpy array (torch tensors detached)."""
    return t.detach().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float64)


def conv2d(weight: torch.Tensor | np.ndarray, bias: torch.Tensor | np.ndarray | None, name: str,
           activation: str | None = None, stride: int = 1, padding: str | None = None,
           order: list[int] | None = None, hwio: bool = False):
    """A built Keras Conv2D holding (OIHW, or HWIO if `hwio`) weights, output channels reordered
    by `order`; padding 'same' unless strided ('valid'), as a PyTorch conv with k // 2 padding."""
    kernel, b = float64_array(weight), None if bias is None else float64_array(bias)
    kernel = kernel if hwio else oihw_to_hwio(kernel)
    if order is not None:
        kernel, b = kernel[..., order], None if b is None else b[order]
    padding = padding or ("valid" if stride > 1 else "same")
    conv = keras.layers.Conv2D(kernel.shape[3], kernel.shape[0], strides=stride, padding=padding,
                               activation=activation, use_bias=b is not None, name=name)
    conv.build((None, None, None, kernel.shape[2]))
    conv.set_weights([kernel.astype(np.float32)] + ([] if b is None else [b.astype(np.float32)]))
    return conv


def conv_like(layer: nn.Conv2d, name: str, activation: str | None = None, order: list[int] | None = None):
    """conv2d with a PyTorch conv's weights, bias and stride."""
    return conv2d(layer.weight, layer.bias, name, activation, layer.stride[0], order=order)


def prelu_like(layer: nn.PReLU, name: str):
    """A built Keras PReLU with a PyTorch PReLU's slopes (one slope: shared over H, W and C)."""
    slopes = float64_array(layer.weight).astype(np.float32)
    prelu = keras.layers.PReLU(shared_axes=[1, 2, 3] if slopes.size == 1 else [1, 2], name=name)
    prelu.build((None, 8, 8, 1 if slopes.size == 1 else slopes.size))
    prelu.set_weights([slopes.reshape(prelu.get_weights()[0].shape)])
    return prelu


class ReplicatePad2(keras.layers.Layer):
    """Replicate-pad 2 pixels on every side by slicing and concatenation."""

    def call(self, x):
        x = tf.concat([x[:, :1], x[:, :1], x, x[:, -1:], x[:, -1:]], axis=1)
        return tf.concat([x[:, :, :1], x[:, :, :1], x, x[:, :, -1:], x[:, :, -1:]], axis=2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, None, input_shape[-1])


class DepthToSpace(keras.layers.Layer):
    """tf.nn.depth_to_space (DEPTH_TO_SPACE); feed it channels in `layout.depth_to_space_order`."""

    def __init__(self, block_size: int, **kwargs):
        super().__init__(**kwargs)
        self.block_size = block_size

    def call(self, x):
        return tf.nn.depth_to_space(x, self.block_size)

    def get_config(self) -> dict:
        return {**super().get_config(), "block_size": self.block_size}


class AddConstant(keras.layers.Layer):
    """x + a fixed per-channel constant (ADD)."""

    def __init__(self, value, **kwargs):
        super().__init__(**kwargs)
        self.value = [float(v) for v in np.asarray(value).reshape(-1)]

    def call(self, x):
        return x + tf.constant(np.asarray(self.value, dtype=np.float32).reshape(1, 1, 1, -1))

    def get_config(self) -> dict:
        return {**super().get_config(), "value": self.value}


class ChannelSplit(keras.layers.Layer):
    """The channel axis cut into groups of `sizes` channels, one STRIDED_SLICE each: XNNPACK takes
    those (fp32 and int8) but not SPLIT_V, which left every SplitSR block outside it (19 partitions)."""

    def __init__(self, sizes, **kwargs):
        super().__init__(**kwargs)
        self.sizes = [int(s) for s in sizes]

    def call(self, x):
        ends = np.cumsum(self.sizes)
        return [x[..., end - size:end] for size, end in zip(self.sizes, ends, strict=True)]

    def compute_output_shape(self, input_shape):
        return [(*input_shape[:-1], s) for s in self.sizes]

    def get_config(self) -> dict:
        return {**super().get_config(), "sizes": self.sizes}


class SpatialMean(keras.layers.Layer):
    """Global average pool (MEAN): (N, H, W, C) -> (N, 1, 1, C), or (N, C) without `keepdims`."""

    def __init__(self, keepdims: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = keepdims

    def call(self, x):
        return tf.reduce_mean(x, axis=[1, 2], keepdims=self.keepdims)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, 1, input_shape[-1]) if self.keepdims else (input_shape[0], input_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "keepdims": self.keepdims}


class ChannelScale(keras.layers.Layer):
    """features (N, H, W, C) times per-channel weights (N, 1, 1, C) (MUL)."""

    def call(self, inputs):
        features, weights = inputs
        return features * weights

    def compute_output_shape(self, input_shape):
        return input_shape[0]


class ResizeBilinear(keras.layers.Layer):
    """Bilinear upscaling by an integer factor with static sizes (RESIZE_BILINEAR, half-pixel
    centres = PyTorch's align_corners=False)."""

    def __init__(self, scale: int, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, x):
        return tf.image.resize(x, [x.shape[1] * self.scale, x.shape[2] * self.scale], method="bilinear")

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, h * self.scale, w * self.scale, c)

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale}


def keras_blocked_chain(chain, int8_ranges: list[tuple[float, float]] | None = None) -> keras.Model:
    """Keras twin of an edgesr.nn.blocked.BlockedChain: CONV_2D (ReLU fused), CONV_2D 1x1, ADD and
    one DEPTH_TO_SPACE; the last conv's and the skip's channels reordered for depth_to_space. With
    `int8_ranges`, a FakeQuant after each stored tensor sets its int8 range."""
    ranges = iter(int8_ranges or [])

    def stored(y, name):
        lo_hi = next(ranges, None)
        return y if lo_hi is None else FakeQuant(*lo_hi, name=f"{name}_range")(y)

    side = chain.shuffle.upscale_factor
    order = depth_to_space_order(chain.colors, side)
    lr = keras.Input(shape=(None, None, chain.colors), batch_size=1, name="lr")
    layers = [chain.entry, *chain.layers]
    y = lr
    for index, layer in enumerate(layers):
        conv = layer.conv
        last = index == len(layers) - 1
        y = conv2d(conv.weight, conv.bias, f"conv{index}", activation="relu" if layer.combine is not None else None,
                   stride=conv.stride[0], padding="same", order=order if last else None)(y)
        y = stored(y, f"conv{index}")
        if layer.combine is not None:
            y = stored(conv2d(layer.combine.weight, None, f"prelu{index}")(y), f"prelu{index}")
    skip = conv2d(chain.skip.weight, None, "skip", stride=chain.skip.stride[0], padding="valid", order=order)(lr)
    y = stored(keras.layers.Add(name="residual")([y, skip]), "residual")
    return keras.Model(lr, DepthToSpace(side, name="sr")(y), name="blocked_chain")


class FakeQuant(keras.layers.Layer):
    """Identity in float; tells the int8 converter this tensor's range (lo, hi)."""

    def __init__(self, lo: float, hi: float, **kwargs):
        super().__init__(**kwargs)
        self.lo, self.hi = float(lo), float(hi)

    def call(self, x):
        return tf.quantization.fake_quant_with_min_max_args(x, min=self.lo, max=self.hi, num_bits=8)

    def get_config(self) -> dict:
        return {**super().get_config(), "lo": self.lo, "hi": self.hi}


def ecb_network(lr, plain):
    """An ECB network's deploy graph (edgesr/nn/ecb.py ECBSRPlain) on the Keras tensor `lr`: its
    convs and PReLUs with the same weights, the last conv's channels reordered for depth_to_space,
    the global residual added before the shuffle (no Resize op)."""
    cfg = plain.config
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
    return DepthToSpace(cfg.scale, name="sr")(y)
