"""Edge-oriented Convolution Blocks (ECBSR, Zhang et al., ACM MM 2021) as shared layers: the
five-branch training block, the plain conv3x3 block it re-parameterizes into, and a whole ECB
network (conv chain, global residual, PixelShuffle) in both forms plus its online-folded
training form. The ECBSR family is one such network; ClassSR's ECB branches are three.

State-dict key names follow the authors' code (xindongzhang/ECBSR), so their checkpoints
load with strict=True.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgesr import fold
from edgesr.resources import Footprint


@dataclass(frozen=True)
class ECBShape:
    """The shape of one ECB network: M inner ECBs of C channels, upscale factor, colours,
    optional identity branch in the inner blocks."""

    num_modules: int = 4
    channels: int = 16
    scale: int = 4
    colors: int = 1
    with_idt: bool = False


def add_global_residual(y: torch.Tensor, x: torch.Tensor, scale: int) -> torch.Tensor:
    """Add the LR input to each colour's s*s pre-shuffle channels (= nearest-upsampled skip)."""
    if x.shape[1] == 1:
        return y + x
    colour_of_channel = torch.arange(x.shape[1], device=x.device).repeat_interleave(scale * scale)
    return y + x.index_select(1, colour_of_channel)


class SeqConv3x3(nn.Module):
    """conv1x1 followed by a 3x3 conv (dense expand-squeeze, or a scaled fixed edge template)."""

    def __init__(self, kind: str, in_channels: int, out_channels: int, depth_multiplier: float = 2.0):
        super().__init__()
        self.kind = kind
        mid = int(out_channels * depth_multiplier) if kind == "conv1x1-conv3x3" else out_channels
        conv0 = nn.Conv2d(in_channels, mid, kernel_size=1)
        self.k0, self.b0 = conv0.weight, conv0.bias
        if kind == "conv1x1-conv3x3":
            conv1 = nn.Conv2d(mid, out_channels, kernel_size=3)
            self.k1, self.b1 = conv1.weight, conv1.bias
        else:
            self.scale = nn.Parameter(torch.randn(out_channels, 1, 1, 1) * 1e-3)
            self.bias = nn.Parameter(torch.randn(out_channels) * 1e-3)
            template = fold.edge_template(kind.split("-")[1], out_channels)
            self.mask = nn.Parameter(template, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A 1x1 conv of the zero-padded input pads its output with its bias, as in the paper:
        # this is what makes the 3x3 fold exact at the image borders.
        y0 = F.conv2d(F.pad(x, (1, 1, 1, 1)), self.k0, self.b0)
        if self.kind == "conv1x1-conv3x3":
            return F.conv2d(y0, self.k1, self.b1)
        return F.conv2d(y0, self.scale * self.mask, self.bias, groups=self.mask.shape[0])

    def fused(self) -> fold.Kernel:
        """This branch as one 3x3 kernel and bias (float64)."""
        if self.kind == "conv1x1-conv3x3":
            return fold.fuse_1x1_kxk(self.k0, self.b0, self.k1, self.b1)
        return fold.fuse_1x1_scaled_template(self.k0, self.b0, self.scale, self.mask, self.bias)


class ECB(nn.Module):
    """Edge-oriented Convolution Block: five parallel branches (+ optional identity), then act."""

    def __init__(self, in_channels: int, out_channels: int, act: bool, with_idt: bool = False,
                 depth_multiplier: float = 2.0):
        super().__init__()
        self.with_idt = with_idt and in_channels == out_channels
        self.conv3x3 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.conv1x1_3x3 = SeqConv3x3("conv1x1-conv3x3", in_channels, out_channels, depth_multiplier)
        self.conv1x1_sbx = SeqConv3x3("conv1x1-sobelx", in_channels, out_channels)
        self.conv1x1_sby = SeqConv3x3("conv1x1-sobely", in_channels, out_channels)
        self.conv1x1_lpl = SeqConv3x3("conv1x1-laplacian", in_channels, out_channels)
        self.act = nn.PReLU(num_parameters=out_channels) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (self.conv3x3(x) + self.conv1x1_3x3(x) + self.conv1x1_sbx(x)
             + self.conv1x1_sby(x) + self.conv1x1_lpl(x))
        if self.with_idt:
            y = y + x
        return self.act(y) if self.act is not None else y

    def forward_folded(self, x: torch.Tensor) -> torch.Tensor:
        """forward() computed as one conv3x3 with the folded kernel (rounded to x's dtype): the
        same function of x and of every branch weight, at a quarter of the MACs (M4C16: 9C^2
        instead of (9 + 2*9*2 + 3)C^2 per pixel), with autograd through the fold."""
        weight, bias = self.fused()
        y = F.conv2d(x, weight.to(x.dtype), bias.to(x.dtype), padding=1)
        return self.act(y) if self.act is not None else y

    def fused(self) -> fold.Kernel:
        """All branches summed into one 3x3 kernel and bias (float64, differentiable)."""
        parts = [(self.conv3x3.weight, self.conv3x3.bias), self.conv1x1_3x3.fused(),
                 self.conv1x1_sbx.fused(), self.conv1x1_sby.fused(), self.conv1x1_lpl.fused()]
        if self.with_idt:
            weight = self.conv3x3.weight
            parts.append((fold.identity_kernel(weight.shape[0], device=weight.device),
                          torch.zeros(weight.shape[0], dtype=torch.float64, device=weight.device)))
        return fold.sum_kernels(parts)

    def reparameterize(self) -> PlainBlock:
        """The deploy block: one conv3x3 (+ PReLU with the same slopes)."""
        ref = self.conv3x3.weight
        block = PlainBlock(ref.shape[1], ref.shape[0], act=self.act is not None).to(ref.device, ref.dtype)
        with torch.no_grad():
            weight, bias = self.fused()
            block.conv3x3.weight.copy_(weight.to(ref.dtype))
            block.conv3x3.bias.copy_(bias.to(ref.dtype))
            if self.act is not None:
                block.act.weight.copy_(self.act.weight)
        return block


class PlainBlock(nn.Module):
    """Deploy-time block: conv3x3 with bias, optional per-channel PReLU."""

    def __init__(self, in_channels: int, out_channels: int, act: bool):
        super().__init__()
        self.conv3x3 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.act = nn.PReLU(num_parameters=out_channels) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3x3(x)
        return self.act(y) if self.act is not None else y


def block_channels(config: ECBShape) -> list[tuple[int, int, bool]]:
    """(in, out, has_act) for every block of the backbone."""
    c, out = config.channels, config.colors * config.scale ** 2
    return [(config.colors, c, True)] + [(c, c, True)] * config.num_modules + [(c, out, False)]


class ECBSR(nn.Module):
    """Training graph: ECB backbone, global residual, PixelShuffle."""

    def __init__(self, config: ECBShape):
        super().__init__()
        self.config = config
        self.backbone = nn.Sequential(*[ECB(i, o, act, config.with_idt) for i, o, act in block_channels(config)])
        self.upsampler = nn.PixelShuffle(config.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsampler(add_global_residual(self.backbone(x), x, self.config.scale))

    def reparameterize(self) -> ECBSRPlain:
        """Fold every ECB into one conv3x3: the deploy graph, in eval mode."""
        plain = ECBSRPlain(self.config)
        plain.backbone = nn.Sequential(*[block.reparameterize() for block in self.backbone])
        return plain.eval()


class OnlineFolded(nn.Module):
    """The training graph as a training step runs it (online re-parameterization, OREPA, Hu et al.
    CVPR 2022): every ECB folded into one conv3x3 on each forward. The branches are linear, so
    the fold is the same function of the input and of every branch weight, and backpropagating
    through it gives the multi-branch graph's gradients (to rounding); a step costs the deploy
    graph's MACs plus the fold's, about 4x less than the branches on a CPU. Holds no weights of
    its own: the optimizer and the weight average keep working on the training graph."""

    def __init__(self, train: ECBSR):
        super().__init__()
        self.train_graph = train

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for block in self.train_graph.backbone:
            y = block.forward_folded(y)
        graph = self.train_graph
        return graph.upsampler(add_global_residual(y, x, graph.config.scale))


class ECBSRPlain(nn.Module):
    """Deploy graph: conv3x3 + PReLU layers, global residual, PixelShuffle."""

    def __init__(self, config: ECBShape):
        super().__init__()
        self.config = config
        self.backbone = nn.Sequential(*[PlainBlock(i, o, act) for i, o, act in block_channels(config)])
        self.upsampler = nn.PixelShuffle(config.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsampler(add_global_residual(self.backbone(x), x, self.config.scale))


def ecb_footprint(shape: ECBShape) -> Footprint:
    """Parameters and layers of an ECB network's training graph, from its shape alone."""
    params = layers = 0
    for cin, cout, act in block_channels(shape):
        params += 9 * cin * cout + cout  # conv3x3
        params += cin * 2 * cout + 2 * cout + 18 * cout * cout + cout  # 1x1 expand, 3x3 squeeze
        params += 3 * (cin * cout + 12 * cout)  # edge branches: 1x1 (+ bias), scale, bias, 3x3 template
        params += cout if act else 0
        layers += 7 if act else 6
    return Footprint(params, layers)
