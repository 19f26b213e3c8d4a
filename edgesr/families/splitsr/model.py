"""SplitSR (Liu et al., 2021): an RCAN-based hybrid network whose first residual groups use
channel-split residual blocks, and the deploy graph it re-parameterizes into.

No official code or checkpoint exists, so the details below are edgesr's choices where the
paper is vague; they are part of the contract (state_dict keys, I/O) from now on.

Input/output: RGB in 0..pixel_range (default 255, RCAN's rgb_range), DIV2K mean subtracted by
RCAN's MeanShift (mean (0.4488, 0.4371, 0.4040), std 1) and added back at the end.

Training graph `SplitSR(config)` (key names follow RCAN, so RCAN tooling reads it):

    sub_mean (MeanShift, a frozen 1x1 conv)             sub_mean.{weight,bias}
    head: conv3x3(3->C)                                 head.0.*
    body: `groups` residual groups, then conv3x3(C->C)  body.{g}.*, body.{G}.*
          + long skip from the head output
    tail: upsampler (conv3x3 + PixelShuffle), conv3x3(C->3)
                                                        tail.0.0.* (x2, x3), tail.0.{0,2}.* (x4), tail.1.*
    add_mean (MeanShift, frozen)                        add_mean.{weight,bias}
    -BIC variants only: + bicubic(mean-subtracted input)  bicubic (buffer: the fixed phase kernel)
      added to the tail conv's output before add_mean

Residual group g (RCAN's ResidualGroup): `blocks` blocks, conv3x3(C->C), + group input.
Groups g < hybrid_index use SplitSRBlocks, the rest RCAN's RCAB:

- SplitSRBlock (keys body.{g}.body.{b}.body.{0,2}.*): the FIRST a = alpha*C channels are
  active, the other C-a passive. Active part: conv3x3(a->a), ReLU, conv3x3(a->a), + active
  part (residual on the active slice only). Output = concat[passive, processed active]: the
  processed slice is placed LAST, so the next block's first a channels are a slice not yet
  processed; every channel is processed within ceil(1/alpha) blocks, and after C/a blocks
  the channel order is back to the start. Conv cost per block: 2 x 9 x a^2 MACs per pixel
  (alpha^2 of an RCAB's convs).
- RCAB (keys body.{g}.body.{b}.body.{0,2}.*, body.{g}.body.{b}.body.3.conv_du.{0,2}.*):
  conv3x3, ReLU, conv3x3, channel attention (global average pool, 1x1 C->C/r, ReLU,
  1x1 C/r->C, sigmoid, multiply; r = 16), + block input.
- Group tail (body.{g}.body.{blocks}.*): a full conv3x3(C->C) in every group, split groups too.
- Upsampler as RCAN: x2/x3 conv3x3(C->s*s*C) + PixelShuffle(s); x4 two such x2 stages.

Choices where the paper is vague (also in README.md, "SplitSR"):
1. Two convs (conv-ReLU-conv, EDSR/RCAN style) on the active slice, not one: a residual
   block's usual form; cost 2 x 9a^2 per block.
2. The residual is added on the active slice only (passive channels pass unchanged), so
   the block is split -> f(active) + active -> concat.
3. Active = the FIRST a channels; processed slice concatenated LAST (the rotation above).
4. SplitSRBlocks carry no channel attention; RCABs do (r = 16, squeeze width
   max(1, C // 16) so tiny test widths still build).
5. The group tail conv stays full width (C->C) in split groups too, as RCAN's group conv.
6. a = alpha * C must be a whole number of channels (alpha = 0.3 with C = 16 is refused
   instead of silently rounded), 0 < alpha <= 1; alpha = 1 gives a plain residual block
   without attention (no split, no concat).
7. hybrid_index counts groups from the input side: groups 0..hybrid_index-1 are split
   groups (0 <= hybrid_index <= groups).
8. Variants named -BIC (not in the paper) add a global bicubic residual, as SMSR does (ECBSR
   adds a nearest one): the network learns the detail bicubic misses instead of the whole
   image, which a small network trained for hours on a CPU needs (measured in README). It has
   no weights; a fixed phase-kernel buffer `bicubic` (`edgesr.nn.bicubic`) marks it in the
   state_dict, so checkpoints say which graph they are.

Re-parameterization (`SplitSR.reparameterize()` -> `SplitSRPlain`):
- add_mean (1x1 conv A2, bias c2) after the tail conv (W, b) folds exactly into the tail conv:
  W' = A2 W, b' = A2 b + c2 (a 1x1 affine after a conv has no border effect).
- sub_mean (1x1 conv A, bias c) before the head conv CANNOT fold exactly into the head conv:
  the head conv zero-pads the mean-subtracted image, so at the borders it sees 0, whereas a
  conv folded onto the raw input would see 0 - mean (folding c into the bias adds the mean
  term for padded taps too). The error is position dependent (only border pixels), so no
  bias can absorb it, and TFLite's PAD has one scalar constant, not one per colour. So the
  deploy graph writes sub_mean as A (x + d) with d = A^-1 c: the matrix A (1/std) folds
  exactly into the head weights (scaling commutes with zero padding), and the offset d
  (= -pixel_range * mean) stays one explicit elementwise ADD on the 3-channel input
  (buffer `input_offset`). Cost: 3 adds per LR pixel, next to hundreds of thousands of MACs.
- -BIC: the residual reads the mean-subtracted input A1 x + c1 = A1 (x + d), and bicubic
  filters every colour alike, so bicubic(A1 (x + d)) = A1 bicubic(x + d): after add_mean's
  matrix it is (A2 A1) bicubic(x + d). The deploy graph's phase kernel mixes colours by A2 A1
  and reads x + d, the input offset it already adds (exact for any rounding of the kernel,
  unlike moving c1 into a bias, which needs each phase's taps to sum to exactly 1).
Everything else (split blocks, RCABs, upsampler) is already its inference form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgesr.errors import UserError
from edgesr.family import DataclassConfig
from edgesr.fold import fold_input_affine, fold_output_affine
from edgesr.nn.bicubic import bicubic_kernel, bicubic_phases
from edgesr.nn.layers import CALayer, MeanShift
from edgesr.resources import Footprint

SCALES = (2, 3, 4)
REDUCTION = 16  # RCAN's channel-attention reduction
PRESETS = (
    "A0.25-G6B6-H3-C64",   # default: the paper-scale hybrid (3 split groups + 3 RCAN groups)
    "A0.5-G6B6-H3-C64",    # wider active slice
    "A0.25-G6B6-H6-C64",   # every group split (no channel attention)
    "A0.25-G2B4-H2-C32",   # CPU-friendly, used by benchmarks/splitsr_alpha.py
    "A0.25-G2B2-H1-C16",   # tiny: tests and quick checks
    "A0.25-G2B2-H1-C16-BIC",  # the tiny one + a bicubic residual
    "A0.25-G4B2-H1-C16-BIC",  # the same deepened by two RCAN groups
    "A0.25-G8B2-H1-C16-BIC",  # deepened by six: the built-in x4 checkpoint
)
BICUBIC_SUFFIX = "-BIC"
_VARIANT = re.compile(r"^A(\d*\.?\d+)-G(\d+)B(\d+)-H(\d+)-C(\d+)(-BIC)?$", re.IGNORECASE)


@dataclass(frozen=True)
class SplitSRConfig(DataclassConfig):
    """Architecture of one SplitSR network."""

    alpha: float = 0.25
    groups: int = 6
    blocks: int = 6
    hybrid_index: int = 3
    channels: int = 64
    scale: int = 4
    colors: int = 3
    pixel_range: float = 255.0
    bicubic_skip: bool = False  # -BIC: + bicubic(input), see choice 8

    def __post_init__(self) -> None:
        problems = []
        if self.channels < 1 or self.groups < 1 or self.blocks < 1:
            problems.append("groups, blocks and channels must be at least 1")
        if not 0 <= self.hybrid_index <= self.groups:
            problems.append(f"hybrid index {self.hybrid_index} must be between 0 and the group count {self.groups}")
        if not 0 < self.alpha <= 1:
            problems.append(f"alpha {self.alpha:g} must be in (0, 1]")
        elif abs(self.alpha * self.channels - round(self.alpha * self.channels)) > 1e-6 \
                or round(self.alpha * self.channels) < 1:
            problems.append(f"alpha {self.alpha:g} x {self.channels} channels is not a whole number of "
                            "active channels (choose alpha = a / C)")
        if self.scale not in SCALES:
            problems.append(f"scale {self.scale} is not one of {', '.join(map(str, SCALES))}")
        if self.colors != 3:
            problems.append("SplitSR is an RGB model (colors = 3)")
        if problems:
            raise UserError("invalid splitsr config: " + "; ".join(problems))

    @property
    def active_channels(self) -> int:
        """a = alpha * C: the channels each SplitSRBlock convolves."""
        return round(self.alpha * self.channels)

    @property
    def squeeze_channels(self) -> int:
        """Channel-attention bottleneck width C // r (at least 1)."""
        return max(1, self.channels // REDUCTION)

    @property
    def variant(self) -> str:
        suffix = BICUBIC_SUFFIX if self.bicubic_skip else ""
        return f"A{self.alpha:g}-G{self.groups}B{self.blocks}-H{self.hybrid_index}-C{self.channels}{suffix}"


def parse_variant(variant: str, scale: int, pixel_range: float = 255.0) -> SplitSRConfig:
    """'A0.25-G6B6-H3-C64[-BIC]' -> config (alpha, groups x blocks, hybrid index, channels, bicubic
    residual)."""
    match = _VARIANT.match(variant.strip())
    if not match:
        raise UserError(f"unknown splitsr variant '{variant}': use A<alpha>-G<groups>B<blocks>-H<hybrid index>-"
                        f"C<channels>, e.g. {', '.join(PRESETS)}")
    alpha, groups, blocks, hybrid, channels = (float(match.group(1)), *map(int, match.group(2, 3, 4, 5)))
    if channels >= 1 and 0 < alpha <= 1 and abs(alpha * channels - round(alpha * channels)) <= 1e-6:
        alpha = round(alpha * channels) / channels  # canonical: 0.250 -> 0.25, exactly a / C
    return SplitSRConfig(alpha, groups, blocks, hybrid, channels, scale, 3, pixel_range, bool(match.group(6)))


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


class RCAB(nn.Module):
    """RCAN residual channel-attention block: conv, ReLU, conv, CA, + input."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.body = nn.Sequential(conv3x3(channels, channels), nn.ReLU(), conv3x3(channels, channels),
                                  CALayer(channels, squeeze))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class SplitSRBlock(nn.Module):
    """Channel-split residual block: conv-ReLU-conv + residual on the first `active`
    channels; output = concat[passive, processed active] (processed slice last)."""

    def __init__(self, channels: int, active: int):
        super().__init__()
        self.channels, self.active = channels, active
        self.body = nn.Sequential(conv3x3(active, active), nn.ReLU(), conv3x3(active, active))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active == self.channels:  # alpha = 1: a plain residual block, no split/concat
            return self.body(x) + x
        active, passive = torch.split(x, [self.active, self.channels - self.active], dim=1)
        return torch.cat([passive, self.body(active) + active], dim=1)


class ResidualGroup(nn.Module):
    """RCAN residual group: blocks, conv3x3, + group input."""

    def __init__(self, blocks: list[nn.Module], channels: int):
        super().__init__()
        self.body = nn.Sequential(*blocks, conv3x3(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class Upsampler(nn.Sequential):
    """RCAN upsampler: x2/x3 conv3x3(C->s*s*C) + PixelShuffle(s); x4 = two x2 stages."""

    def __init__(self, scale: int, channels: int):
        stages = [2, 2] if scale == 4 else [scale]
        layers: list[nn.Module] = []
        for s in stages:
            layers += [conv3x3(channels, s * s * channels), nn.PixelShuffle(s)]
        super().__init__(*layers)


def _groups(config: SplitSRConfig) -> list[nn.Module]:
    c, a = config.channels, config.active_channels
    groups = []
    for g in range(config.groups):
        if g < config.hybrid_index:
            blocks = [SplitSRBlock(c, a) for _ in range(config.blocks)]
        else:
            blocks = [RCAB(c, config.squeeze_channels) for _ in range(config.blocks)]
        groups.append(ResidualGroup(blocks, c))
    return groups


class _Trunk(nn.Module):
    """head, body (+ long skip), tail: shared by the training and the deploy graph."""

    def _build_trunk(self, config: SplitSRConfig) -> None:
        c = config.channels
        self.config = config
        self.head = nn.Sequential(conv3x3(config.colors, c))
        self.body = nn.Sequential(*_groups(config), conv3x3(c, c))
        self.tail = nn.Sequential(Upsampler(config.scale, c), conv3x3(c, config.colors))
        if config.bicubic_skip:
            self.register_buffer("bicubic", bicubic_kernel(config.scale).float())

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        return self.tail(self.body(x) + x)

    def _plus_bicubic(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """y + the bicubic residual of x (phase conv + PixelShuffle) in -BIC variants, else y."""
        if not self.config.bicubic_skip:
            return y
        return y + F.pixel_shuffle(bicubic_phases(x, self.bicubic), self.config.scale)


class SplitSR(_Trunk):
    """Training graph: MeanShift, head, hybrid residual groups, upsampler, tail, MeanShift."""

    def __init__(self, config: SplitSRConfig):
        super().__init__()
        self.sub_mean = MeanShift(config.pixel_range, -1)
        self._build_trunk(config)
        self.add_mean = MeanShift(config.pixel_range, +1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sub_mean(x)
        return self.add_mean(self._plus_bicubic(self._trunk(x), x))

    def reparameterize(self) -> SplitSRPlain:
        """The deploy graph (eval mode): add_mean folded into the tail conv, sub_mean's scale
        folded into the head conv, its offset kept as one explicit add, the bicubic residual's
        colour matrices folded into its kernel (see module docstring)."""
        ref = self.head[0].weight
        plain = SplitSRPlain(self.config).to(ref.device, ref.dtype)
        shared = {k: v for k, v in self.state_dict().items() if not k.startswith(("sub_mean.", "add_mean."))}
        plain.load_state_dict({**shared, "input_offset": plain.input_offset}, strict=True)
        head_w, offset = fold_input_affine(self.sub_mean.weight, self.sub_mean.bias, self.head[0].weight)
        tail_w, tail_b = fold_output_affine(self.tail[1].weight, self.tail[1].bias,
                                            self.add_mean.weight, self.add_mean.bias)
        if self.config.bicubic_skip:
            a1, a2 = (t.weight[:, :, 0, 0].detach().double() for t in (self.sub_mean, self.add_mean))
            phases = self.bicubic.detach().double().unflatten(0, (3, -1))  # (colour, phase, colour, 5, 5)
            with torch.no_grad():
                plain.bicubic.copy_(torch.einsum("dc,cpeyx->dpeyx", a2 @ a1, phases).flatten(0, 1).to(ref.dtype))
        with torch.no_grad():
            plain.head[0].weight.copy_(head_w.to(ref.dtype))
            plain.input_offset.copy_(offset.view(1, -1, 1, 1).to(ref.dtype))
            plain.tail[1].weight.copy_(tail_w.to(ref.dtype))
            plain.tail[1].bias.copy_(tail_b.to(ref.dtype))
        return plain.eval()


class SplitSRPlain(_Trunk):
    """Deploy graph: x + input_offset, then the same head/body/tail with the MeanShift
    matrices folded in (no sub_mean/add_mean modules); -BIC: + the bicubic residual of x + offset."""

    def __init__(self, config: SplitSRConfig):
        super().__init__()
        self.register_buffer("input_offset", torch.zeros(1, config.colors, 1, 1))
        self._build_trunk(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.input_offset
        return self._plus_bicubic(self._trunk(x), x)


def is_deploy_state_dict(state_dict: dict) -> bool:
    """True for a SplitSRPlain checkpoint (explicit input offset, no MeanShift modules)."""
    return "input_offset" in state_dict and "sub_mean.weight" not in state_dict


def _not_splitsr(reason: str) -> UserError:
    return UserError(f"checkpoint is not a SplitSR state_dict ({reason}); pass «model» for the network "
                     "it was trained as")


def config_from_state_dict(state_dict: dict, pixel_range: float = 255.0) -> SplitSRConfig:
    """Infer alpha, groups, blocks, hybrid index, channels and scale from the weight shapes
    of either layout: alpha from the split convs' width, the hybrid index from which groups
    have channel attention."""
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    head = shapes.get("head.0.weight")
    if head is None or len(head) != 4:
        raise _not_splitsr("no head.0.weight")
    channels, colors = head[0], head[1]
    if colors != 3:
        raise _not_splitsr(f"head takes {colors} channels, SplitSR is RGB")
    group_ids = sorted({int(m.group(1)) for k in shapes if (m := re.match(r"^body\.(\d+)\.body\.", k))})
    if not group_ids or group_ids != list(range(len(group_ids))):
        raise _not_splitsr("no residual groups body.<g>.body.*")
    groups = len(group_ids)
    per_group = []
    for g in group_ids:
        block_ids = sorted({int(m.group(1)) for k in shapes
                            if (m := re.match(rf"^body\.{g}\.body\.(\d+)\.body\.0\.weight$", k))})
        if not block_ids or block_ids != list(range(len(block_ids))):
            raise _not_splitsr(f"group {g} has no blocks")
        if f"body.{g}.body.{len(block_ids)}.weight" not in shapes:
            raise _not_splitsr(f"group {g} has no tail conv")
        kinds = {f"body.{g}.body.{b}.body.3.conv_du.0.weight" in shapes for b in block_ids}
        widths = {shapes[f"body.{g}.body.{b}.body.0.weight"][0] for b in block_ids}
        if len(kinds) != 1 or len(widths) != 1:
            raise _not_splitsr(f"group {g} mixes block kinds or widths")
        per_group.append((len(block_ids), kinds.pop(), widths.pop()))
    blocks = {n for n, _, _ in per_group}
    if len(blocks) != 1:
        raise _not_splitsr("groups have different block counts")
    attention = [has_ca for _, has_ca, _ in per_group]
    hybrid = attention.index(True) if True in attention else groups
    if any(not has_ca for has_ca in attention[hybrid:]):
        raise _not_splitsr("split groups must come before the channel-attention groups")
    split_widths = {w for _, has_ca, w in per_group if not has_ca}
    if len(split_widths) > 1:
        raise _not_splitsr("split groups have different active widths")
    # With no split group (hybrid index 0) alpha is not in the weights: report the default 0.25.
    active = split_widths.pop() if split_widths else round(0.25 * channels) or channels
    if "body.{}.weight".format(groups) not in shapes:
        raise _not_splitsr("no body conv after the groups")
    if "tail.0.2.weight" in shapes:
        scale = 4
    else:
        up = shapes.get("tail.0.0.weight")
        ratio = up[0] // channels if up else 0
        scale = {4: 2, 9: 3}.get(ratio) if up and up[0] % channels == 0 else None
        if scale is None:
            raise _not_splitsr(f"upsampler conv {up} is no x2/x3/x4 layout")
    squeeze = {shapes[k][0] for k in shapes if k.endswith(".conv_du.0.weight")}
    config = SplitSRConfig(active / channels, groups, blocks.pop(), hybrid, channels, scale, 3, pixel_range,
                           "bicubic" in shapes)
    if squeeze and squeeze != {config.squeeze_channels}:
        raise _not_splitsr(f"channel attention squeezes to {sorted(squeeze)} channels, edgesr uses "
                           f"C // {REDUCTION} = {config.squeeze_channels}")
    return config



def footprint(config: SplitSRConfig) -> Footprint:
    """Parameters and layers of the training graph, from the config alone (nothing is built)."""
    c, a, r, s = config.channels, config.active_channels, config.squeeze_channels, config.scale

    def conv(cin: int, cout: int, k: int = 3) -> int:
        return k * k * cin * cout + cout

    split_block = 2 * conv(a, a)
    rcab = 2 * conv(c, c) + conv(c, r, 1) + conv(r, c, 1)
    groups = sum(config.blocks * (split_block if g < config.hybrid_index else rcab) + conv(c, c)
                 for g in range(config.groups))
    stages = [2, 2] if s == 4 else [s]
    upsampler = sum(conv(c, f * f * c) for f in stages)
    params = 2 * conv(3, 3, 1) + conv(config.colors, c) + groups + conv(c, c) + upsampler + conv(c, config.colors)
    layers = 8 + config.groups * (config.blocks * 6 + 2) + 2 * len(stages) + 3 * config.bicubic_skip
    return Footprint(params, layers)
