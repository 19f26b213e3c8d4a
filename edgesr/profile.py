"""Parameter and multiply-accumulate (MAC) counts of PyTorch graphs."""

from __future__ import annotations

import torch
import torch.nn as nn


def count_params(module: nn.Module) -> int:
    """Trainable parameters (fixed templates such as ECB's Sobel masks excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one forward pass (batch 1): every conv2d, conv_transpose2d and linear call,
    including functional calls inside modules (ECB branches), seen through a TorchFunctionMode."""
    total = 0

    class _Counter(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            nonlocal total
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            if func in (torch.nn.functional.conv2d, torch.conv2d):
                weight = args[1] if len(args) > 1 else kwargs["weight"]
                total += out[0].numel() * weight[0].numel()
            elif func is torch.nn.functional.conv_transpose2d:
                inp, weight = args[0], args[1]
                total += inp[0].numel() * weight[0].numel()
            elif func is torch.nn.functional.linear:
                weight = args[1] if len(args) > 1 else kwargs["weight"]
                total += out.numel() // out.shape[0] * weight.shape[1]
            return out

    param = next(module.parameters())
    with torch.no_grad(), _Counter():
        module(torch.zeros(1, *input_shape[1:], dtype=param.dtype, device=param.device))
    return total

def macs_per_lr_pixel(module: nn.Module, colors: int, size: int = 16) -> float:
    """MACs per input (LR) pixel, measured on a size x size input."""
    return count_macs(module, (1, colors, size, size)) / (size * size)
