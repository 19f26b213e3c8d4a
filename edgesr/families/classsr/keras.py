"""ClassSR's classifier and branches rebuilt in Keras (NHWC) with the PyTorch weights copied in.

Every graph takes a batch of fixed-size tiles (static H/W, dynamic batch), so the bilinear
skip of SRResNet lowers to a RESIZE_BILINEAR with static sizes (which TFLite runs) and no
TRANSPOSE appears:
- classifier: CONV_2D (4x4 stride 4), LEAKY_RELU, CONV_2D 1x1, MEAN, FULLY_CONNECTED;
- FSRCNN: CONV_2D, PRELU (one shared slope), TRANSPOSE_CONV ('valid'; a "-skip" variant adds a
  second one on the input and an ADD), then a crop (STRIDED_SLICE) that reproduces PyTorch's
  padding / output_padding;
- SRResNet: CONV_2D, LEAKY_RELU, ADD, DEPTH_TO_SPACE (upconv channels permuted, see
  edgesr/layout.py), RESIZE_BILINEAR (half-pixel centres = align_corners=False);
- ECB (re-parameterized): CONV_2D, PRELU, CONCATENATION + ADD (the RGB residual), DEPTH_TO_SPACE,
  as ECBSR's twin (edgesr.nn.keras.ecb_network).
"""

from __future__ import annotations

import numpy as np
import torch.nn as nn

from edgesr.families.classsr.model import FSRCNN, Classifier, MSRResNet
from edgesr.layout import depth_to_space_order
from edgesr.nn.ecb import ECBSRPlain
from edgesr.nn.keras import (
    DepthToSpace,
    ResizeBilinear,
    SpatialMean,
    conv_like,
    ecb_network,
    float64_array,
    prelu_like,
)
from edgesr.nn.tf import keras


def _input(colors: int, tile: int, name: str = "lr"):
    return keras.Input(shape=(tile, tile, colors), name=name)


def build_keras_classifier(classifier: Classifier, colors: int, tile: int) -> keras.Model:
    """Tiles (N, t, t, C) -> logits (N, classes)."""
    lr = _input(colors, tile)
    y = lr
    for i, layer in enumerate(classifier.CondNet):
        if isinstance(layer, nn.Conv2d):
            y = conv_like(layer, f"cond{i}")(y)
        else:
            y = keras.layers.LeakyReLU(negative_slope=layer.negative_slope, name=f"lrelu{i}")(y)
    y = SpatialMean(keepdims=False, name="pool")(y)
    dense = keras.layers.Dense(classifier.lastOut.out_features, name="last_out")
    dense.build((None, classifier.lastOut.in_features))
    dense.set_weights([float64_array(classifier.lastOut.weight).T.astype(np.float32),
                       float64_array(classifier.lastOut.bias).astype(np.float32)])
    return keras.Model(lr, dense(y), name="classsr_classifier")


def _fsrcnn(lr, net: FSRCNN):
    head, act = net.head_conv
    y = prelu_like(act, "head_prelu")(conv_like(head, "head")(lr))
    for i, layer in enumerate(net.body_conv):
        if isinstance(layer, nn.Sequential):
            y = prelu_like(layer[1], f"body{i}_prelu")(conv_like(layer[0], f"body{i}")(y))
        elif isinstance(layer, nn.PReLU):
            y = prelu_like(layer, f"body{i}_prelu")(y)
        else:
            y = conv_like(layer, f"body{i}")(y)
    tail = net.tail_conv
    s, k, p = tail.stride[0], tail.kernel_size[0], tail.padding[0]
    y = _deconv_like(tail, "tail")(y)  # (H - 1) s + k; torch keeps [p, p + sH)
    if net.skip_conv is not None:
        y = keras.layers.Add(name="skip")([y, _deconv_like(net.skip_conv, "skip_deconv")(lr)])
    end = k - s - p
    return keras.layers.Cropping2D(((p, end), (p, end)), name="tail_crop")(y)


def _deconv_like(layer: nn.ConvTranspose2d, name: str):
    """A 'valid' Keras Conv2DTranspose with the weights of `layer` (its padding is cropped after)."""
    deconv = keras.layers.Conv2DTranspose(layer.out_channels, layer.kernel_size[0], strides=layer.stride[0],
                                          padding="valid", name=name)
    deconv.build((None, None, None, layer.in_channels))
    # torch ConvTranspose2d (in, out, kh, kw) -> Keras (kh, kw, out, in); both are conv2d's gradient, no flip
    deconv.set_weights([np.ascontiguousarray(float64_array(layer.weight).transpose(2, 3, 1, 0)).astype(np.float32),
                        float64_array(layer.bias).astype(np.float32)])
    return deconv


def _srresnet(lr, net: MSRResNet):
    lrelu = keras.layers.LeakyReLU
    nf = net.conv_first.out_channels
    y = lrelu(negative_slope=0.1, name="first_lrelu")(conv_like(net.conv_first, "conv_first")(lr))
    for i, block in enumerate(net.recon_trunk):
        z = keras.layers.ReLU(name=f"trunk{i}_relu")(conv_like(block.conv1, f"trunk{i}_conv1")(y))
        y = keras.layers.Add(name=f"trunk{i}_add")([y, conv_like(block.conv2, f"trunk{i}_conv2")(z)])
    s = net.pixel_shuffle.upscale_factor
    stages = [net.upconv1, net.upconv2] if net.scale == 4 else [net.upconv1]
    for i, conv in enumerate(stages, start=1):
        y = DepthToSpace(s, name=f"shuffle{i}")(conv_like(conv, f"upconv{i}", depth_to_space_order(nf, s))(y))
        y = lrelu(negative_slope=0.1, name=f"up{i}_lrelu")(y)
    y = lrelu(negative_slope=0.1, name="hr_lrelu")(conv_like(net.HRconv, "HRconv")(y))
    y = conv_like(net.conv_last, "conv_last")(y)
    return keras.layers.Add(name="skip")([y, ResizeBilinear(net.scale, name="bilinear")(lr)])


def build_keras_branch(net: nn.Module, colors: int, tile: int, name: str) -> keras.Model:
    """Tiles (N, t, t, C) -> SR tiles (N, s t, s t, C) for an FSRCNN, SRResNet or (plain) ECB branch."""
    lr = _input(colors, tile)
    if isinstance(net, ECBSRPlain):
        sr = ecb_network(lr, net)
    else:
        sr = _fsrcnn(lr, net) if isinstance(net, FSRCNN) else _srresnet(lr, net)
    return keras.Model(lr, sr, name=name)
