"""ClassSR (Kong et al., CVPR 2021): classify each LR sub-image, then super-resolve it with
one of three branches of growing width. Training graph, losses and the deploy bundle.

Key names and layers follow the authors' code (XPixelGroup/ClassSR, codes/models/archs/
classSR_fsrcnn_arch.py, classSR_srresnet_arch.py, FSRCNN_arch.py, SRResNet_arch.py,
arch_util.py), so their checkpoints load with strict=True:

    classifier.CondNet.{0,2,4,6,8}.*   conv4x4/s4 (3->128), LeakyReLU 0.1, 3 x [conv1x1 128->128,
                                       LeakyReLU 0.1], conv1x1 (128->32)
    classifier.lastOut.*               global average pool, Linear(32->3)
    net1.*, net2.*, net3.*             the simple / medium / hard branch

FSRCNN branch (FSRCNN_net(d, s=12, m=4); PReLU with ONE shared slope, as nn.PReLU()):
    head_conv.0 conv5x5 (3->d), head_conv.1 PReLU
    body_conv.0.0 conv1x1 (d->s), body_conv.0.1 PReLU, body_conv.1..m conv3x3 (s->s),
    body_conv.{m+1} PReLU, body_conv.{m+2}.0 conv1x1 (s->d), body_conv.{m+2}.1 PReLU
    tail_conv ConvTranspose2d(d->3, 9x9, stride s)
    edgesr's "-skip" variants add skip_conv, a ConvTranspose2d(3->3) of the same geometry on the
    LR input, initialised to bilinear upsampling and trained: out = tail(features) + skip(x).
    Without it the smallest branch stays below bicubic (it must learn interpolation itself).
SRResNet branch (BasicSR/mmsr MSRResNet(nf, nb=16)):
    conv_first, recon_trunk.{i}.conv1/conv2 (conv-ReLU-conv + identity), upconv1 (+ upconv2
    for x4) + PixelShuffle + LeakyReLU 0.1, HRconv + LeakyReLU 0.1, conv_last,
    + bilinear-upsampled input (align_corners=False).
ECB branch (edgesr's, not the paper's; edgesr/nn/ecb.py): an RGB ECBSR network of M ECBs of
    width C (keys backbone.{i}.*, as ECBSR's), trained with its five branches per block and
    re-parameterized into plain conv3x3 + PReLU in the deploy bundle: the three widths of
    ClassSR with ECBSR's phone-friendly deploy graph (CONV_2D, PRELU, ADD, DEPTH_TO_SPACE).
Widths: FSRCNN d = 16/36/56, SRResNet nf = 36/52/64 (the paper's); ECB C = 8/16/24, M = 4.
Input: RGB in [0, 1].

Choices (also in README.md, "ClassSR"):
1. Scales 2, 3, 4. The authors hard-code x4 (tail padding 3, output_padding 1). For any s
   edgesr uses padding p = ceil((9 - s) / 2), output_padding 2p - (9 - s), which gives
   exactly s*H output and reproduces the authors' (3, 1) at x4; x3 -> (3, 0), x2 -> (4, 1).
   The stride is not stored in FSRCNN weights, so FSRCNN checkpoints are read as x4.
2. The classifier pools with a global mean; the authors' AvgPool2d(H) is the same on the
   square tiles it sees.
3. Fresh weights use PyTorch's default init (the authors scale kaiming init by 0.1).
4. Routing: training = soft, sum_k p_k net_k(x) with p = softmax(logits); eval = hard argmax,
   each class's tiles batched through its branch (the authors run one tile at a time).
5. Tiling (edgesr/tiling.py): the last tile is aligned to the border (the authors drop the
   remainder) and overlaps are blended with squared-distance ramps that sum to one instead of
   the authors' plain average, which leaves seams; Tiling(blend="mean") restores theirs.

Re-parameterization: ECB branches fold into plain convs (FSRCNN/SRResNet have nothing to fold:
no BatchNorm); `reparameterize()` splits the model into its deploy bundle, `ClassSRDeploy`: the classifier and the three
branches as separate modules plus the tiling (tile 32, stride 28), whose forward runs the
routed whole-image inference of edgesr.families.classsr.routing in PyTorch.
"""

from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgesr.distributed import batch_gather, batch_sum, current, local_part
from edgesr.errors import UserError
from edgesr.family import DataclassConfig
from edgesr.nn.ecb import ECBSR, ECBShape, ECBSRPlain, OnlineFolded, ecb_footprint
from edgesr.resources import Footprint
from edgesr.tiling import Tiling

SCALES = (2, 3, 4)
FAMILIES = ("FSRCNN", "SRResNet", "ECB")
CLASSES = ("simple", "medium", "hard")  # the order of the classifier's logits and of net1..net3
PAPER_WIDTHS = {"FSRCNN": (16, 36, 56), "SRResNet": (36, 52, 64), "ECB": (8, 16, 24)}  # ECB: edgesr's
PAPER_DEPTH = {"FSRCNN": 4, "SRResNet": 16, "ECB": 4}  # FSRCNN: mapping convs m; SRResNet: blocks nb; ECB: M
FSRCNN_SHRINK = 12
LOSS_WEIGHTS = (1000.0, 0.5, 3.0)  # L1, class loss, average loss: the authors' configs for [0, 1] data
STAGES = ("branches", "classifier", "joint")  # the authors' training recipe, in order
PRESETS = (
    "FSRCNN-16-36-56",       # the paper's ClassSR-FSRCNN
    "SRResNet-36-52-64",     # the paper's ClassSR-SRResNet (16 blocks)
    "FSRCNN-16-36-56-skip",  # the paper's widths with a learned bilinear skip per branch (shipped)
    "FSRCNN-4-6-8-S4M1",     # tiny: tests
    "FSRCNN-4-6-8-S4M1-skip",  # tiny: tests
    "SRResNet-4-6-8-B1",     # tiny: tests
    "ECB-8-16-24",           # default (shipped): ECBSR-style branches (M4C8/16/24, RGB), re-parameterized
    "ECB-4-6-8-M1",          # tiny: tests
)
_FSRCNN = re.compile(r"^FSRCNN(?:-(\d+)-(\d+)-(\d+))?(?:-S(\d+)M(\d+))?(-skip)?$", re.IGNORECASE)
_SRRESNET = re.compile(r"^SRResNet(?:-(\d+)-(\d+)-(\d+))?(?:-B(\d+))?$", re.IGNORECASE)
_ECB = re.compile(r"^ECB(?:-(\d+)-(\d+)-(\d+))?(?:-M(\d+))?$", re.IGNORECASE)


@dataclass(frozen=True)
class ClassSRConfig(DataclassConfig):
    """Architecture of one ClassSR model: branch family, the three widths, depth, scale."""

    family: str = "FSRCNN"
    widths: tuple[int, int, int] = (16, 36, 56)
    depth: int = 4  # FSRCNN: mapping convs m; SRResNet: residual blocks nb; ECB: modules M
    shrink: int = FSRCNN_SHRINK  # FSRCNN s (0 for SRResNet)
    scale: int = 4
    colors: int = 3
    pixel_range: float = 1.0
    skip: bool = False  # FSRCNN: a learned transposed-conv skip from the LR input

    def __post_init__(self) -> None:
        problems = []
        if self.skip and self.family != "FSRCNN":
            problems.append("only FSRCNN branches take a skip (SRResNet has its bilinear one)")
        if self.family not in FAMILIES:
            problems.append(f"family {self.family} is not one of {', '.join(FAMILIES)}")
        if len(self.widths) != 3 or min(self.widths) < 1 or self.depth < (0 if self.family == "ECB" else 1):
            problems.append("three widths and a depth of at least 1 (ECB: 0) are needed")
        if self.family == "FSRCNN" and self.shrink < 1:
            problems.append("FSRCNN needs a shrink width s >= 1")
        if self.scale not in SCALES:
            problems.append(f"scale {self.scale} is not one of {', '.join(map(str, SCALES))}")
        if self.colors != 3:
            problems.append("ClassSR is an RGB model (colors = 3)")
        if problems:
            raise UserError("invalid classsr config: " + "; ".join(problems))

    @property
    def variant(self) -> str:
        widths = "-".join(map(str, self.widths))
        if self.family == "FSRCNN":
            extra = "" if (self.shrink, self.depth) == (FSRCNN_SHRINK, 4) else f"-S{self.shrink}M{self.depth}"
            extra += "-skip" if self.skip else ""
        elif self.family == "ECB":
            extra = "" if self.depth == PAPER_DEPTH["ECB"] else f"-M{self.depth}"
        else:
            extra = "" if self.depth == 16 else f"-B{self.depth}"
        return f"{self.family}-{widths}{extra}"

    def to_dict(self) -> dict:
        return {**asdict(self), "widths": list(self.widths)}


def parse_variant(variant: str, scale: int, pixel_range: float = 1.0) -> ClassSRConfig:
    """'FSRCNN' / 'FSRCNN-16-36-56[-S12M4][-skip]' / 'SRResNet' / 'SRResNet-36-52-64[-B16]' /
    'ECB' / 'ECB-8-16-24[-M4]' -> config."""
    text = variant.strip()
    for family, pattern in (("FSRCNN", _FSRCNN), ("SRResNet", _SRRESNET), ("ECB", _ECB)):
        match = pattern.match(text)
        if not match:
            continue
        groups = match.groups()
        widths = tuple(map(int, groups[:3])) if groups[0] else PAPER_WIDTHS[family]
        skip = False
        if family == "FSRCNN":
            shrink, depth = (int(groups[3]), int(groups[4])) if groups[3] else (FSRCNN_SHRINK, 4)
            skip = bool(groups[5])
        else:
            shrink, depth = 0, int(groups[3]) if groups[3] else PAPER_DEPTH[family]
        return ClassSRConfig(family, widths, depth, shrink, scale, 3, pixel_range, skip)
    raise UserError(f"unknown classsr variant '{variant}': use FSRCNN[-d1-d2-d3][-S<s>M<m>][-skip], "
                    f"SRResNet[-nf1-nf2-nf3][-B<blocks>] or ECB[-c1-c2-c3][-M<modules>], e.g. {', '.join(PRESETS)}")


# --- branches -------------------------------------------------------------------------------

def deconv_padding(scale: int) -> tuple[int, int]:
    """(padding, output_padding) of FSRCNN's 9x9 stride-s ConvTranspose for an s*H output."""
    padding = -(-(9 - scale) // 2)
    return padding, 2 * padding - (9 - scale)


def bilinear_deconv_taps(scale: int, padding: int, size: int = 9) -> torch.Tensor:
    """1-D taps w[k] of a stride-`scale` transposed conv that upsamples bilinearly (half-pixel
    centres): output o = k - p + i s sits at input coordinate (o + 1/2)/s - 1/2, i.e. at
    distance t = (k - p + 1/2)/s - 1/2 from input i, and takes weight max(0, 1 - |t|)."""
    t = (torch.arange(size, dtype=torch.float64) - padding + 0.5) / scale - 0.5
    return (1 - t.abs()).clamp(min=0)


class FSRCNN(nn.Module):
    """The authors' FSRCNN_net(d, s, m): feature extraction, shrink, m mapping convs, expand,
    9x9 transposed-conv upsampling; with `skip`, plus a transposed conv of the same geometry on
    the input (per colour, initialised to bilinear upsampling, then learned)."""

    def __init__(self, colors: int, scale: int, d: int, s: int = FSRCNN_SHRINK, m: int = 4, skip: bool = False):
        super().__init__()
        self.scale = scale
        self.head_conv = nn.Sequential(nn.Conv2d(colors, d, 5, padding=2), nn.PReLU())
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(d, s, 1), nn.PReLU())]
        layers += [nn.Conv2d(s, s, 3, padding=1) for _ in range(m)]
        layers += [nn.PReLU(), nn.Sequential(nn.Conv2d(s, d, 1), nn.PReLU())]
        self.body_conv = nn.Sequential(*layers)
        padding, output_padding = deconv_padding(scale)
        self.tail_conv = nn.ConvTranspose2d(d, colors, 9, stride=scale, padding=padding,
                                            output_padding=output_padding)
        self.skip_conv = None
        if skip:
            self.skip_conv = nn.ConvTranspose2d(colors, colors, 9, stride=scale, padding=padding,
                                                output_padding=output_padding)
            taps = bilinear_deconv_taps(scale, padding)
            with torch.no_grad():
                self.skip_conv.weight.zero_()
                self.skip_conv.bias.zero_()
                for c in range(colors):
                    self.skip_conv.weight[c, c] = torch.outer(taps, taps).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.tail_conv(self.body_conv(self.head_conv(x)))
        return out if self.skip_conv is None else out + self.skip_conv(x)


class ResidualBlockNoBN(nn.Module):
    """conv3x3, ReLU, conv3x3, + input (arch_util.ResidualBlock_noBN)."""

    def __init__(self, nf: int):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv2 = nn.Conv2d(nf, nf, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class MSRResNet(nn.Module):
    """The authors' (BasicSR/mmsr) MSRResNet(nf, nb): residual trunk, PixelShuffle upsampling,
    + bilinear-upsampled input."""

    def __init__(self, colors: int, scale: int, nf: int, nb: int = 16):
        super().__init__()
        self.scale = scale
        self.conv_first = nn.Conv2d(colors, nf, 3, padding=1)
        self.recon_trunk = nn.Sequential(*[ResidualBlockNoBN(nf) for _ in range(nb)])
        self.upconv1 = nn.Conv2d(nf, nf * (9 if scale == 3 else 4), 3, padding=1)
        if scale == 4:
            self.upconv2 = nn.Conv2d(nf, nf * 4, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(3 if scale == 3 else 2)
        self.HRconv = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_last = nn.Conv2d(nf, colors, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.recon_trunk(self.lrelu(self.conv_first(x)))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.scale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.HRconv(out)))
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)


def make_branch(config: ClassSRConfig, width: int, deploy: bool = False) -> nn.Module:
    """One branch of the config's family at the given width (ECB: its plain form if `deploy`)."""
    if config.family == "FSRCNN":
        return FSRCNN(config.colors, config.scale, width, config.shrink, config.depth, config.skip)
    if config.family == "ECB":
        shape = ECBShape(config.depth, width, config.scale, config.colors)
        return ECBSRPlain(shape) if deploy else ECBSR(shape)
    return MSRResNet(config.colors, config.scale, width, config.depth)


def deploy_branch(net: nn.Module) -> nn.Module:
    """A trained branch's deploy form: an ECB branch re-parameterized, the others as they are."""
    return net.reparameterize() if isinstance(net, ECBSR) else copy.deepcopy(net)


def step_branch(net: nn.Module) -> nn.Module:
    """What a training step runs for a branch: an ECB branch through its online fold (same
    function and gradients, a quarter of the MACs: edgesr/nn/ecb.py OnlineFolded)."""
    return OnlineFolded(net) if isinstance(net, ECBSR) else net


class Classifier(nn.Module):
    """The authors' Classifier: CondNet (conv4x4/s4 + 1x1 convs), global average pool, Linear -> 3 logits."""

    def __init__(self, colors: int = 3, classes: int = 3):
        super().__init__()
        self.lastOut = nn.Linear(32, classes)
        self.CondNet = nn.Sequential(nn.Conv2d(colors, 128, 4, 4), nn.LeakyReLU(0.1),
                                     nn.Conv2d(128, 128, 1), nn.LeakyReLU(0.1),
                                     nn.Conv2d(128, 128, 1), nn.LeakyReLU(0.1),
                                     nn.Conv2d(128, 128, 1), nn.LeakyReLU(0.1),
                                     nn.Conv2d(128, 32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lastOut(self.CondNet(x).mean(dim=(2, 3)))


class _Parts(nn.Module):
    """classifier + net1/net2/net3, shared by the training graph and the deploy bundle."""

    def _build(self, config: ClassSRConfig, deploy: bool = False) -> None:
        self.config = config
        self.classifier = Classifier(config.colors, len(CLASSES))
        self.net1, self.net2, self.net3 = (make_branch(config, w, deploy) for w in config.widths)

    @property
    def branches(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        return self.net1, self.net2, self.net3


class ClassSR(_Parts):
    """Training graph. forward: soft routing in training mode, hard argmax routing in eval
    mode (the authors' is_train flag); both work on a batch of LR sub-images."""

    def __init__(self, config: ClassSRConfig):
        super().__init__()
        self._build(config)
        self.stage = "joint"

    def set_stage(self, stage: str) -> None:
        """Select the training stage: 'branches' trains net1..net3 on their difficulty class
        (classifier frozen), 'classifier' trains the classifier with the branches frozen,
        'joint' fine-tunes everything with the full ClassSR loss."""
        if stage not in STAGES:
            raise UserError(f"unknown classsr training stage '{stage}': choose one of {', '.join(STAGES)}")
        self.stage = stage
        for p in self.classifier.parameters():
            p.requires_grad_(stage != "branches")
        for net in self.branches:
            for p in net.parameters():
                p.requires_grad_(stage != "classifier")

    def training_loss(self, lr: torch.Tensor, hr: torch.Tensor, progress: float) -> torch.Tensor:
        """The current stage's objective on a batch of LR/HR patches (progress is unused:
        ClassSR has no schedule inside a stage)."""
        if self.stage == "branches":
            classes = difficulty_classes(lr, hr, self.config.scale)
            total = sum(F.l1_loss(step_branch(net)(lr[classes == k]), hr[classes == k], reduction="sum")
                        for k, net in enumerate(self.branches) if (classes == k).any())
            return total / hr.numel()
        sr, probs = self.route_soft(lr, step=True)
        return classsr_loss(sr, hr, probs)

    def route_soft(self, x: torch.Tensor, step: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum_k p_k net_k(x), p) with p = softmax of the classifier's logits, shape (N, 3); with
        `step`, each branch as a training step runs it (step_branch)."""
        probs = F.softmax(self.classifier(x), dim=1)
        run = step_branch if step else (lambda net: net)
        out = sum(probs[:, k, None, None, None] * run(net)(x) for k, net in enumerate(self.branches))
        return out, probs

    def route_hard(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(net_{argmax}(x) per sample, classes): each class's samples go through its branch."""
        return route_hard(self.classifier, self.branches, self.config.scale, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.route_soft(x) if self.training else self.route_hard(x))[0]

    def reparameterize(self, tiling: Tiling | None = None) -> ClassSRDeploy:
        return reparameterize(self, tiling)


def route_hard(classifier: nn.Module, branches: tuple[nn.Module, ...], scale: int,
               x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard routing of a batch of tiles: the classifier's argmax picks each tile's branch."""
    classes = classifier(x).argmax(dim=1)
    out = x.new_zeros(x.shape[0], x.shape[1], x.shape[2] * scale, x.shape[3] * scale)
    for k, net in enumerate(branches):
        chosen = classes == k
        if chosen.any():
            out[chosen] = net(x[chosen])
    return out, classes


def difficulty_classes(lr: torch.Tensor, hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Class per sample for branch pre-training: the batch ranked by bicubic PSNR and cut into
    thirds, best third -> 0 (simple), worst -> 2 (hard). The authors rank by the PSNR of a
    pretrained MSRResNet; edgesr ships no reference model, and bicubic PSNR ranks sub-images by
    the same property (how much high-frequency detail must be restored). Under data-parallel
    training the ranking is over the global batch; each rank gets its own samples' classes."""
    up = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
    mse = batch_gather((up - hr).pow(2).flatten(1).mean(dim=1))
    order = mse.argsort()  # ascending error = descending PSNR
    classes = torch.empty_like(order)
    classes[order] = torch.arange(len(order), device=lr.device) * len(CLASSES) // len(order)
    return local_part(classes)


def class_loss(probs: torch.Tensor) -> torch.Tensor:
    """The authors' class loss: mean over the batch of (M - 1) - sum_{i<j} |p_i - p_j|;
    zero when every sample is one-hot."""
    m = probs.shape[1]
    pairwise = sum((probs[:, i] - probs[:, j]).abs() for i in range(m) for j in range(i + 1, m))
    return ((m - 1) - pairwise).mean()


def average_loss(probs: torch.Tensor) -> torch.Tensor:
    """The authors' average loss: sum_k |sum_batch p_k - B/M| / (4 B/M); zero when classes are
    used equally often. The sums run over the global batch under data-parallel training."""
    m = probs.shape[1]
    share = probs.shape[0] * current().world / m
    return (batch_sum(probs.sum(dim=0)) - share).abs().sum() / (4 * share)


def classsr_loss(sr: torch.Tensor, hr: torch.Tensor, probs: torch.Tensor,
                 weights: tuple[float, float, float] = LOSS_WEIGHTS) -> torch.Tensor:
    """w1 * L1 + w2 * class loss + w3 * average loss (the authors' 'ClassSR_loss')."""
    return weights[0] * F.l1_loss(sr, hr) + weights[1] * class_loss(probs) + weights[2] * average_loss(probs)


# --- deploy bundle --------------------------------------------------------------------------

class ClassSRDeploy(_Parts):
    """The deploy form: classifier and three branches as separate graphs, plus the tiling.
    forward((1, C, H, W)) is the routed whole-image inference: tile, classify all tiles in one
    batch, run each class's tiles through its branch in batches, blend the overlaps (edgesr/tiling.py)."""

    def __init__(self, config: ClassSRConfig, tiling: Tiling | None = None):
        super().__init__()
        self._build(config, deploy=True)
        self.tiling = tiling or Tiling()
        check_tiling(self.tiling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from edgesr.families.classsr.routing import route_image
        from edgesr.runners import TorchGraph

        graphs = [TorchGraph(m) for m in (self.classifier, *self.branches)]
        result = route_image(x.detach().cpu().numpy(), graphs[0], graphs[1:], self.tiling, self.config.scale)
        return torch.from_numpy(result.sr).to(x.device, x.dtype)


def check_tiling(tiling: Tiling) -> None:
    """The classifier's conv4x4/s4 needs tiles whose side is a multiple of 4."""
    if tiling.tile % 4:
        raise UserError(f"classsr tile size {tiling.tile} must be a multiple of 4 (the classifier's conv4x4 "
                        "stride 4): e.g. 32")


def reparameterize(model: ClassSR, tiling: Tiling | None = None) -> ClassSRDeploy:
    """Split a training graph into its deploy bundle: the classifier and FSRCNN/SRResNet branches
    copied, ECB branches re-parameterized (deploy_branch)."""
    ref = model.classifier.lastOut.weight
    bundle = ClassSRDeploy(model.config, tiling).to(ref.device, ref.dtype)
    bundle.classifier.load_state_dict(copy.deepcopy(model.classifier.state_dict()), strict=True)
    for k, net in enumerate(model.branches, start=1):
        getattr(bundle, f"net{k}").load_state_dict(deploy_branch(net).state_dict(), strict=True)
    return bundle.eval()


# --- checkpoints ----------------------------------------------------------------------------

def _not_classsr(reason: str) -> UserError:
    return UserError(f"checkpoint is not a ClassSR state_dict ({reason}); pass «model» for the network it was "
                     "trained as")


def branch_config(state_dict: dict, prefix: str = "") -> tuple[str, int, int, int, int, bool]:
    """(family, width, depth, shrink, scale, skip) of one branch read from its weight shapes.
    FSRCNN does not store its stride: it is reported as x4, the authors' only scale."""
    shapes = {k[len(prefix):]: tuple(v.shape) for k, v in state_dict.items() if k.startswith(prefix)}
    if "head_conv.0.weight" in shapes:
        width = shapes["head_conv.0.weight"][0]
        shrink = shapes.get("body_conv.0.0.weight", (0,))[0]
        depth = len([k for k in shapes if re.match(r"^body_conv\.\d+\.weight$", k) and len(shapes[k]) == 4])
        return "FSRCNN", width, depth, shrink, 4, "skip_conv.weight" in shapes
    if "conv_first.weight" in shapes:
        width = shapes["conv_first.weight"][0]
        depth = len({m.group(1) for k in shapes if (m := re.match(r"^recon_trunk\.(\d+)\.conv1\.weight$", k))})
        up = shapes.get("upconv1.weight", (0,))[0]
        scale = 4 if "upconv2.weight" in shapes else {4 * width: 2, 9 * width: 3}.get(up)
        if scale is None:
            raise _not_classsr(f"{prefix}upconv1 has {up} output channels, not 4 or 9 x {width}")
        return "SRResNet", width, depth, 0, scale, False
    if "backbone.0.conv1x1_3x3.k0" in shapes:
        blocks = sorted(int(m.group(1)) for k in shapes if (m := re.match(r"^backbone\.(\d+)\.conv3x3\.weight$", k)))
        width, colors = shapes["backbone.0.conv3x3.weight"][:2]
        scale = round((shapes[f"backbone.{blocks[-1]}.conv3x3.weight"][0] / colors) ** 0.5)
        return "ECB", width, len(blocks) - 2, 0, scale, False
    raise _not_classsr(f"no {prefix}head_conv (FSRCNN), {prefix}conv_first (SRResNet) or {prefix}backbone (ECB, "
                       "training layout) weights")


def config_from_state_dict(state_dict: dict, pixel_range: float = 1.0) -> ClassSRConfig:
    """Family, widths, depth and scale from the weight shapes of a full ClassSR state_dict."""
    if not any(k.startswith("classifier.") for k in state_dict):
        if any(k.startswith(("head_conv.", "conv_first.")) for k in state_dict):
            raise UserError("checkpoint holds one branch (no classifier.* or net1/net2/net3.* keys): load branch "
                            "checkpoints with edgesr.families.classsr.model.load_branches, or pass a full ClassSR "
                            "checkpoint")
        raise _not_classsr("no classifier.* keys")
    found = [branch_config(state_dict, f"net{k}.") for k in (1, 2, 3)]
    families, depths, shrinks, scales, skips = ({f[i] for f in found} for i in (0, 2, 3, 4, 5))
    if len(families) != 1 or len(depths) != 1 or len(shrinks) != 1 or len(scales) != 1 or len(skips) != 1:
        raise _not_classsr("net1/net2/net3 differ in family, depth, skip or scale")
    return ClassSRConfig(families.pop(), tuple(f[1] for f in found), depths.pop(), shrinks.pop(), scales.pop(),
                         3, pixel_range, skips.pop())


def load_branches(model: ClassSR, paths: list, classifier: str | None = None) -> None:
    """Load the authors' per-branch checkpoints (stage 1 of their recipe) into net1..net3, and
    optionally a classifier checkpoint whose keys start with 'classifier.'; strict, 'module.' stripped."""
    from edgesr.checkpoints import load_strict, read_checkpoint

    if len(paths) != 3:
        raise UserError(f"ClassSR has three branches: got {len(paths)} branch checkpoints")
    for k, (net, path) in enumerate(zip(model.branches, paths, strict=True), start=1):
        load_strict(net, read_checkpoint(path).state_dict, f"classsr net{k} ({path})")
    if classifier is not None:
        sd = read_checkpoint(classifier).state_dict
        load_strict(model.classifier, {k.removeprefix("classifier."): v for k, v in sd.items()
                                       if k.startswith("classifier.")}, f"classsr classifier ({classifier})")


def tile_macs(module: nn.Module, colors: int, tile: int) -> int:
    """MACs of one module on one tile."""
    from edgesr.profile import count_macs

    return count_macs(module, (1, colors, tile, tile))



def footprint(config: ClassSRConfig) -> Footprint:
    """Parameters and layers of the training graph, from the config alone (nothing is built)."""
    c = config.colors

    def conv(cin: int, cout: int, size: int = 3) -> int:
        return size * size * cin * cout + cout

    classifier = conv(c, 128, 4) + 3 * conv(128, 128, 1) + conv(128, 32, 1) + 32 * len(CLASSES) + len(CLASSES)
    params, layers = classifier, 10
    for width in config.widths:
        if config.family == "FSRCNN":
            s, m = config.shrink, config.depth
            params += conv(c, width, 5) + 1 + conv(width, s, 1) + 1 + m * conv(s, s) + 1 + conv(s, width, 1) + 1
            params += 81 * width * c + c  # the 9x9 transposed conv
            params += (81 * c * c + c) if config.skip else 0
            layers += m + 10
        elif config.family == "ECB":
            own = ecb_footprint(ECBShape(config.depth, width, config.scale, c))
            params, layers = params + own.params, layers + own.layers
        else:
            ups = [4, 4] if config.scale == 4 else [config.scale ** 2]
            params += (conv(c, width) + 2 * config.depth * conv(width, width) + sum(conv(width, u * width) for u in ups)
                       + conv(width, width) + conv(width, c))
            layers += 3 * config.depth + 8
    return Footprint(params, layers)
