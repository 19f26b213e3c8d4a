"""Parameters, multiply-accumulates (MACs) and activation sizes of PyTorch graphs. MACs come
from torch.utils.flop_counter (FLOPs / 2: it counts the convs, transposed convs and linear
layers of every branch, functional calls included)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

if TYPE_CHECKING:
    from edgesr.deployable import Deployable


def count_params(module: nn.Module) -> int:
    """Trainable parameters (fixed templates such as ECB's Sobel masks excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _probe(module: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    param = next(module.parameters())
    return torch.zeros(1, *input_shape[1:], dtype=param.dtype, device=param.device)


def count_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one forward pass at batch 1."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(_probe(module, input_shape))
    return counter.get_total_flops() // 2


def macs_per_lr_pixel(module: nn.Module, colors: int, size: int = 16) -> float:
    """MACs per input (LR) pixel, measured on a size x size input."""
    return count_macs(module, (1, colors, size, size)) / (size * size)


def deployable_macs_per_pixel(deployable: Deployable, size: int = 32) -> float:
    """MACs per LR pixel of the deployable's whole-image inference (its glue included), on a blank
    size x size image: content-dependent glue (ClassSR's routing) counts what that image takes."""
    import numpy as np

    runner = deployable.torch_runner()
    with FlopCounterMode(display=False) as counter:
        runner(np.zeros((1, deployable.io.colors, size, size), dtype=np.float32))
    return counter.get_total_flops() / 2 / (size * size)


class _Widest(TorchFunctionMode):
    """Records the element count of the largest floating-point tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.widest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                self.widest = max(self.widest, tensor.numel())
        return out


def peak_activation_per_pixel(module: nn.Module, colors: int, size: int = 16) -> float:
    """Elements of the largest tensor of one forward pass, per input (LR) pixel."""
    with torch.no_grad(), _Widest() as mode:
        module(_probe(module, (1, colors, size, size)))
    return mode.widest / (size * size)
