"""The SMSR dense-masked deploy graph rebuilt in Keras (NHWC) with the PyTorch weights copied in.

Everything the TFLite converter sees is a native op with dynamic height and width:
- pad to even: MIRROR_PAD (SYMMETRIC, by H % 2 and W % 2 at the bottom/right = replicate);
  the output is cropped back to s*H x s*W by STRIDED_SLICE;
- spatial mask: CONV_2D, AVERAGE_POOL_2D, and the ConvTranspose(k3, s2, p1, op1) rewritten
  exactly as a conv3x3 producing the 2x2 output phases + DEPTH_TO_SPACE (`convtranspose_phases`),
  then GREATER(logit1, logit0) + CAST: the mask is computed in-graph for every input;
- gating by MUL with the 0/1 mask; SPLIT_V/CONCATENATION for the [dense; sparse] groups;
- bicubic residual: replicate padding by slicing + CONCATENATION, a fixed 5x5 CONV_2D giving the
  3*s*s phases, added before the one DEPTH_TO_SPACE (no RESIZE op: it does not run with
  dynamic H/W in TFLite). Convs feeding a shuffle are permuted by `depth_to_space_order`.
"""

from __future__ import annotations

import numpy as np
import torch.nn as nn

from edgesr.families.smsr.model import DeploySMM, SMSRDeploy
from edgesr.layout import depth_to_space_order
from edgesr.nn.keras import (
    AddConstant,
    ChannelScale,
    ChannelSplit,
    DepthToSpace,
    ReplicatePad2,
    SpatialMean,
    conv2d,
    float64_array,
)
from edgesr.nn.tf import keras, tf


class PadToEven(keras.layers.Layer):
    """Replicate one row/column at the bottom/right where H/W is odd (MIRROR_PAD, SYMMETRIC);
    batch 1, as every edgesr TFLite model."""

    def call(self, x):
        shape = tf.shape(x)
        pads = tf.stack([[0, 0], [0, shape[1] % 2], [0, shape[2] % 2], [0, 0]])
        y = tf.pad(x, pads, mode="SYMMETRIC")
        # dynamic paddings lose the static channel count in the converter: a RESHAPE restores it
        return tf.reshape(y, [1, shape[1] + shape[1] % 2, shape[2] + shape[2] % 2, x.shape[-1]])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, None, input_shape[-1])


class CropLike(keras.layers.Layer):
    """Crop the SR output to scale x the size of the (unpadded) LR input."""

    def __init__(self, scale: int, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, inputs):
        sr, lr = inputs
        shape = tf.shape(lr)
        return sr[:, :shape[1] * self.scale, :shape[2] * self.scale]

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], None, None, input_shape[0][-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale}


class HardMask(keras.layers.Layer):
    """(1, H, W, 2) logits -> (1, H, W, 1) float mask, 1 where logit1 > logit0 (GREATER + CAST)."""

    def call(self, logits):
        return tf.cast(tf.greater(logits[..., 1:2], logits[..., 0:1]), logits.dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)


def convtranspose_phases(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch ConvTranspose2d(k3, s2, p1, output_padding 1) (weight (in, out, 3, 3)) as an
    equivalent 'same' conv3x3 on the low-resolution map whose output, after depth_to_space(2),
    is the transposed conv's output: HWIO kernel (3, 3, in, 4*out), bias (4*out,).
    Output pixel 2m+r reads input m+d through tap k = r + 1 - 2d (when 0 <= k <= 2)."""
    cin, cout = weight.shape[:2]
    kernel = np.zeros((3, 3, cin, 4 * cout), dtype=np.float64)
    for ry in range(2):
        for rx in range(2):
            for ty in range(3):
                for tx in range(3):
                    ky, kx = ry + 1 - 2 * (ty - 1), rx + 1 - 2 * (tx - 1)
                    if 0 <= ky <= 2 and 0 <= kx <= 2:
                        first = (ry * 2 + rx) * cout
                        kernel[ty, tx, :, first:first + cout] = weight[:, :, ky, kx]
    return kernel, np.tile(bias, 4)


def _split(x, sizes: list[int], name: str) -> list:
    """Channel groups of x (no op when there is only one non-empty group)."""
    if sum(1 for s in sizes if s) < 2:
        return [x if s else None for s in sizes]
    return ChannelSplit(sizes, name=name)(x)


def _spatial_mask(x, branch: nn.Sequential, name: str):
    conv0, _, _, conv1, _, up = branch
    y = conv2d(conv0.weight, conv0.bias, f"{name}_m0", "relu")(x)
    y = keras.layers.AveragePooling2D(2, name=f"{name}_pool")(y)
    y = conv2d(conv1.weight, conv1.bias, f"{name}_m1", "relu")(y)
    kernel, bias = convtranspose_phases(float64_array(up.weight), float64_array(up.bias))
    y = conv2d(kernel, bias, f"{name}_up", hwio=True)(y)
    return HardMask(name=f"{name}_mask")(DepthToSpace(2, name=f"{name}_up_shuffle")(y))


def _smm(x, smm: DeploySMM, name: str, masks: list):
    mask = _spatial_mask(x, smm.spa_mask, name)
    masks.append(mask)
    outs, fea = [], x
    for i, layer in enumerate(smm.layers):
        dense_in, sparse_in, dense_out, sparse_out = layer.counts
        d_in, s_in = _split(fea, [dense_in, sparse_in], f"{name}_l{i}_split")
        y = None
        if layer.from_dense is not None:
            y = conv2d(layer.from_dense.weight, None, f"{name}_l{i}_dense")(d_in)
            if sparse_out:
                d_out, s_out = _split(y, [dense_out, sparse_out], f"{name}_l{i}_osplit")
                s_out = ChannelScale(name=f"{name}_l{i}_gate_ds")([s_out, mask])
                y = s_out if d_out is None else keras.layers.Concatenate(name=f"{name}_l{i}_cat")([d_out, s_out])
        if layer.from_sparse is not None:
            z = conv2d(layer.from_sparse.weight, None, f"{name}_l{i}_sparse")(s_in)
            z = ChannelScale(name=f"{name}_l{i}_gate_s")([z, mask])
            y = z if y is None else keras.layers.Add(name=f"{name}_l{i}_add")([y, z])
        fea = keras.layers.ReLU(name=f"{name}_l{i}_relu")(y)
        outs.append(fea)
    y = conv2d(smm.collect.weight, smm.collect.bias, f"{name}_collect")(
        keras.layers.Concatenate(name=f"{name}_cat")(outs))
    w = SpatialMean(name=f"{name}_ca_pool")(y)
    w = conv2d(smm.ca.conv_du[0].weight, smm.ca.conv_du[0].bias, f"{name}_ca_down", "relu")(w)
    w = conv2d(smm.ca.conv_du[2].weight, smm.ca.conv_du[2].bias, f"{name}_ca_up", "sigmoid")(w)
    y = ChannelScale(name=f"{name}_ca_mul")([y, w])
    return keras.layers.Add(name=f"{name}_res")([y, x])


def build_keras_smsr(deploy: SMSRDeploy, with_masks: bool = False) -> keras.Model:
    """Keras twin of an SMSRDeploy (batch 1, dynamic H/W). with_masks: also output every SMM's
    spatial mask (1, H, W, 1) on the even-padded grid, to measure mask agreement."""
    cfg = deploy.config
    s = cfg.scale
    lr = keras.Input(shape=(None, None, 3), batch_size=1, name="lr")
    x = PadToEven(name="pad_even")(lr)
    y = AddConstant(float64_array(deploy.input_offset), name="input_offset")(x)
    y = conv2d(deploy.head[0].weight, deploy.head[0].bias, "head0", "relu")(y)
    feat = conv2d(deploy.head[2].weight, deploy.head[2].bias, "head2")(y)
    fea, outs, masks = feat, [], []
    for k, smm in enumerate(deploy.body):
        fea = _smm(fea, smm, f"smm{k}", masks)
        outs.append(fea)
    y = keras.layers.Concatenate(name="collect_cat")(outs) if len(outs) > 1 else outs[0]
    y = conv2d(deploy.collect[0].weight, deploy.collect[0].bias, "collect0", "relu")(y)
    y = conv2d(deploy.collect[2].weight, deploy.collect[2].bias, "collect2")(y)
    y = keras.layers.Add(name="long_skip")([y, feat])
    order = depth_to_space_order(3, s)
    tail = deploy.tail[0]
    y = conv2d(tail.weight[order], tail.bias[order], "tail")(y)
    bicubic = conv2d(deploy.bicubic[order], None, "bicubic", padding="valid")(ReplicatePad2(name="bicubic_pad")(x))
    y = DepthToSpace(s, name="shuffle")(keras.layers.Add(name="bicubic_add")([y, bicubic]))
    sr = CropLike(s, name="crop")([y, lr])
    name = f"smsr_{cfg.variant.lower().replace('-', '_')}_x{s}"
    return keras.Model(lr, [sr, *masks] if with_masks else sr, name=name)
