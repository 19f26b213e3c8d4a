"""PyTorch layers shared by the families (RCAN's, used by SplitSR and SMSR)."""

from __future__ import annotations

import torch
import torch.nn as nn

RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K, as RCAN/EDSR
RGB_STD = (1.0, 1.0, 1.0)


class MeanShift(nn.Conv2d):
    """RCAN's MeanShift: a frozen 1x1 conv y = x / std + sign * pixel_range * mean / std."""

    def __init__(self, pixel_range: float, sign: int, mean=RGB_MEAN, std=RGB_STD):
        super().__init__(3, 3, kernel_size=1)
        std_t = torch.tensor(std, dtype=torch.float32)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1) / std_t.view(3, 1, 1, 1))
            self.bias.copy_(sign * pixel_range * torch.tensor(mean, dtype=torch.float32) / std_t)
        for p in self.parameters():
            p.requires_grad = False


class CALayer(nn.Module):
    """RCAN channel attention: avgpool, 1x1 (C->C/r), ReLU, 1x1 (C/r->C), sigmoid, multiply."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(nn.Conv2d(channels, squeeze, 1), nn.ReLU(),
                                     nn.Conv2d(squeeze, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))
