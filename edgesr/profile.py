"""Parameter, multiply-accumulate (MAC) and activation-size counts of PyTorch graphs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class LayerCall:
    """Shapes of one conv2d / conv_transpose2d / linear call (batch 1)."""

    op: str
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    @property
    def macs(self) -> int:
        weight_per_out = 1
        for d in self.weight_shape[1:]:
            weight_per_out *= d
        if self.op == "conv2d":  # every output element reads one (in/groups) x kh x kw slice
            return _numel(self.output_shape) * weight_per_out
        if self.op == "conv_transpose2d":  # every input element scatters into (out/groups) x kh x kw
            return _numel(self.input_shape) * weight_per_out
        return _numel(self.output_shape) * self.weight_shape[1]  # linear


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def trace_layers(module: nn.Module, input_shape: tuple[int, ...]) -> list[LayerCall]:
    """Every conv/linear call of one forward pass, functional calls inside modules included
    (ECB branches call F.conv2d directly), seen through a TorchFunctionMode."""
    calls: list[LayerCall] = []

    class _Recorder(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            if func in (F.conv2d, F.conv_transpose2d, F.linear):
                weight = args[1] if len(args) > 1 else kwargs["weight"]
                calls.append(LayerCall(func.__name__, tuple(args[0].shape[1:]), tuple(weight.shape),
                                       tuple(out.shape[1:])))
            return out

    param = next(module.parameters())
    with torch.no_grad(), _Recorder():
        module(torch.zeros(1, *input_shape[1:], dtype=param.dtype, device=param.device))
    return calls


def count_params(module: nn.Module) -> int:
    """Trainable parameters (fixed templates such as ECB's Sobel masks excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one forward pass at batch 1."""
    return sum(call.macs for call in trace_layers(module, input_shape))


def macs_per_lr_pixel(module: nn.Module, colors: int, size: int = 16) -> float:
    """MACs per input (LR) pixel, measured on a size x size input."""
    return count_macs(module, (1, colors, size, size)) / (size * size)


def peak_activation_per_pixel(module: nn.Module, colors: int, size: int = 16) -> float:
    """Elements of the largest conv/linear output per input (LR) pixel."""
    calls = trace_layers(module, (1, colors, size, size))
    return max(_numel(c.output_shape) for c in calls) / (size * size)
