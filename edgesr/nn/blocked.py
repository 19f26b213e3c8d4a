"""A conv3x3/PReLU chain with a global residual and PixelShuffle, computed on 2x2 pixel blocks:
the form edgesr stores in int8 (see edgesr/fold.py for the math).

Why: on int8, XNNPACK has no PRELU (it runs on TFLite's one-thread reference kernel and splits
the graph into partitions), and an int8 conv costs about the same for 4 to 64 output channels
on wide-vector and AMX CPUs (measured: README, int8). On 2x2 blocks each conv sees a quarter of the
pixels and four times the channels; each PReLU becomes a ReLU fused into its conv plus a 1x1 conv
(prelu(z) = relu(z) - sign(a) relu(-|a| z)). Every op is one XNNPACK int8 op: CONV_2D, ADD,
DEPTH_TO_SPACE. The math is the original's exactly, for even heights and widths; odd sides run
as two overlapping even windows (edgesr/tiling.py: even_windows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgesr import fold
from edgesr.tiling import even_pieces

BLOCK = 2
FORM = "blocked"  # the metadata name of this int8 form
# int8 ranges span this percentile of each tensor's calibration values (both tails): measured on the
# shipped ECBSR x2, min/max ranges lose 0.11 dB PSNR-Y to fp32 on the held-out photos
CLIP_PERCENTILE = 99.999


def _conv(weight: torch.Tensor, bias: torch.Tensor | None, stride: int = 1, padding: int = 0) -> nn.Conv2d:
    out_c, in_c, kh, _ = weight.shape
    conv = nn.Conv2d(in_c, out_c, kh, stride=stride, padding=padding, bias=bias is not None)
    conv.weight.data = weight.float()
    if bias is not None:
        conv.bias.data = bias.float()
    return conv


class BlockedLayer(nn.Module):
    """conv3x3 on blocks, then (for a PReLU layer) ReLU and the 1x1 that recombines the pair."""

    def __init__(self, conv: nn.Conv2d, combine: nn.Conv2d | None):
        super().__init__()
        self.conv, self.combine = conv, combine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.combine(F.relu(y)) if self.combine is not None else y


class BlockedChain(nn.Module):
    """The blocked form: entry conv (stride 2) on the image, blocked layers, skip conv on the
    image, PixelShuffle(2s). Takes even sides only in `core`; `forward` takes any size."""

    size_multiple = BLOCK
    int8_form = FORM

    def __init__(self, entry: BlockedLayer, layers: Sequence[BlockedLayer], skip: nn.Conv2d, colors: int,
                 scale: int, radius: int):
        super().__init__()
        self.entry, self.layers, self.skip = entry, nn.ModuleList(layers), skip
        self.colors, self.scale, self.radius = colors, scale, radius
        self.shuffle = nn.PixelShuffle(BLOCK * scale)

    def core(self, x: torch.Tensor) -> torch.Tensor:
        y = self.entry(x)
        for layer in self.layers:
            y = layer(y)
        return self.shuffle(y + self.skip(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pieces = even_pieces(x.shape[2], x.shape[3], self.radius)
        if len(pieces) == 1:
            return self.core(x)
        out = x.new_zeros(x.shape[0], self.colors, x.shape[2] * self.scale, x.shape[3] * self.scale)
        for piece in pieces:
            piece.place(out, self.core(piece.window(x)), self.scale)
        return out

    def int8_ranges(self, crops: Sequence[np.ndarray], pixel_range: float) -> list[tuple[float, float]]:
        """The int8 range of each stored tensor, in Keras order (per layer: the ReLU pair, then
        its recombination; the last conv; the output), from calibration crops (NCHW, even sides).
        Each spans the CLIP_PERCENTILE of the tensor's calibration values rather than their extremes:
        a few outliers no longer coarsen the step of every other value. The output range is the
        pixel range: what consumers clip to anyway."""
        tails: list[Tails] = []
        largest = max(int(np.prod(crop.shape[2:])) for crop in crops)
        with torch.no_grad():
            for crop in crops:
                x = torch.from_numpy(np.ascontiguousarray(crop)).float()
                seen, y = [], x
                for layer in [self.entry, *self.layers]:
                    z = layer.conv(y)
                    if layer.combine is not None:
                        z = F.relu(z)
                        seen.append(z)
                        z = layer.combine(z)
                    seen.append(z)
                    y = z
                tails = tails or [Tails(len(crops), largest) for _ in seen]
                for tail, tensor in zip(tails, seen, strict=True):
                    tail.add(tensor.flatten().numpy(), int(np.prod(crop.shape[2:])))
        ranges = []
        for tail in tails:
            lo, hi = min(0.0, tail.percentile(100 - CLIP_PERCENTILE)), max(0.0, tail.percentile(CLIP_PERCENTILE))
            ranges.append((lo, hi if hi > lo else lo + 1.0))
        return ranges + [(0.0, float(pixel_range))]

    def to_keras(self, int8_ranges: list[tuple[float, float]] | None = None):
        """The Keras twin; with `int8_ranges` (see int8_ranges) each stored tensor carries its range."""
        from edgesr.nn.keras import keras_blocked_chain

        return keras_blocked_chain(self, int8_ranges)


class Tails:
    """The extreme values of a tensor over calibration crops, enough to give np.percentile's value
    at CLIP_PERCENTILE (and its mirror) exactly without holding every value: each crop keeps the
    k largest and k smallest of its values, k bounded by the share of the largest possible total."""

    def __init__(self, crops: int, largest_pixels: int):
        self.crops, self.largest = crops, largest_pixels
        self.count = 0
        self.low: list[np.ndarray] = []
        self.high: list[np.ndarray] = []

    def add(self, values: np.ndarray, pixels: int) -> None:
        self.count += values.size
        share = 1 - CLIP_PERCENTILE / 100
        k = min(values.size, int(np.ceil(share * values.size * self.crops * self.largest / pixels)) + 2)
        self.low.append(np.partition(values, k - 1)[:k])
        self.high.append(-np.partition(-values, k - 1)[:k])

    def percentile(self, percent: float) -> float:
        """np.percentile(all values, percent) (linear interpolation), for percent in the kept tails."""
        position = percent / 100 * (self.count - 1)  # rank from the bottom
        if percent < 50:
            kept = np.sort(np.concatenate(self.low))
        else:
            kept = np.sort(np.concatenate(self.high))
            position -= self.count - kept.size  # ranks below the kept top values
        below = int(np.floor(position))
        above = min(below + 1, kept.size - 1)
        return float(kept[below] + (position - below) * (kept[above] - kept[below]))


ConvPReLU = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]  # (weight, bias, PReLU slopes or None)


def blocked_chain(layers: Sequence[ConvPReLU], colors: int, scale: int) -> BlockedChain:
    """The blocked form of x -> PixelShuffle(s)(chain(x) + x repeated s*s per colour), where chain
    is conv3x3 (padding 1) layers each followed by its PReLU (slopes) or nothing."""
    if any(tuple(w.shape[2:]) != (3, 3) for w, _, _ in layers):
        raise ValueError("the blocked form takes conv3x3 layers only")
    built = []
    for index, (weight, bias, slopes) in enumerate(layers):
        last = index == len(layers) - 1
        kernel = fold.blocked_entry(weight, BLOCK) if index == 0 else fold.blocked_conv3x3(weight, BLOCK)
        b = fold.blocked_bias(bias, BLOCK)
        if last:
            order = fold.blocked_shuffle_order(weight.shape[0], scale, BLOCK)
            kernel, b = kernel[order], b[order]
        combine = None
        if slopes is not None:
            (kernel, b), combine_w = fold.relu_pair(kernel, b, fold.blocked_bias(slopes.reshape(-1).expand(
                weight.shape[0]), BLOCK))
            combine = _conv(combine_w, None)
        conv = _conv(kernel, b, stride=BLOCK, padding=1) if index == 0 else _conv(kernel, b, padding=1)
        built.append(BlockedLayer(conv, combine))
    skip = _conv(fold.blocked_skip(colors, scale, BLOCK), None, stride=BLOCK)
    return BlockedChain(built[0], built[1:], skip, colors, scale, radius=len(layers)).eval()

