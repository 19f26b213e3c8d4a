"""SMSR (Wang et al., CVPR 2021, "Exploring Sparsity in Image Super-Resolution"): the training
graph with Gumbel-softmax spatial and channel masks, and the exact dense-masked deploy graph
it re-parameterizes into. The sparse (gather -> GEMM -> scatter) inference lives in
`edgesr.families.smsr.sparse`.

State-dict keys follow the authors' code (The-Learning-And-Vision-Atelier-LAVA/SMSR), so their
checkpoints load with strict=True. I/O: RGB in 0..pixel_range (255), DIV2K mean subtracted
by MeanShift and added back.

    sub_mean, add_mean                                  MeanShift (frozen 1x1)
    head: conv3x3(3->C), ReLU, conv3x3(C->C)            head.{0,2}.*
    body: K Sparse Mask Modules (SMM)                   body.{k}.*
    collect: conv1x1(K*C->C), ReLU, conv3x3(C->C)       collect.{0,2}.*, + head output
    tail: conv3x3(C->3*s*s), PixelShuffle(s)            tail.0.*, + bicubic(input), add_mean

SMM: spatial mask conv3x3(C->C/4), ReLU, AvgPool(2), conv3x3(C/4->C/4), ReLU,
ConvTranspose(C/4->2, k3 s2 p1 op1) (body.{k}.spa_mask.{0,3,5}); SMB: 4 conv3x3(C->C, no
bias) + ReLU with channel masks `ch_mask` (1, C, 4, 2) (body.{k}.body.{ch_mask, body.{l}, collect});
channel attention (body.{k}.ca.conv_du.{0,2}); + SMM input. A channel of layer l is dense
(computed everywhere) or sparse (only where the spatial mask is 1); layer l's input kinds are
layer l-1's output kinds (the authors' fixed version).

Modes: `train()` samples Gumbel-softmax masks at temperature `tau`; `eval()` is the hard-mask
mode: spatial mask = logit1 > logit0 (as the authors' code; a tie is 0), channel kind =
argmax of ch_mask (a tie is dense; the authors' softmax().round() would drop such a channel).

Choices (edgesr): odd H/W are replicate-padded by one row/column at the bottom/right and the
output is cropped back (the authors crop the LR image to even size instead). Replicate
padding leaves the bicubic residual exactly equal to the unpadded one (bicubic clamps at the
border); every graph, train and deploy, does the same. Batches of any size are accepted. The
training graph computes the bicubic residual in float64 (`bicubic_upsample`): PyTorch's float32
bicubic drifts from the exact weights with the output index (x3: up to 0.016 on 0..255 at
360x640 LR); in float64 it equals the deploy graph's fixed phase kernel to 1e-13.

Re-parameterization (`SMSR.reparameterize()` -> `SMSRDeploy`, exact up to float rounding):
- sub_mean/add_mean fold as in SplitSR (matrix into the head/tail conv, input offset kept
  as one explicit add); the bicubic residual becomes a fixed 5x5 conv producing the 3*s*s
  phases (`bicubic_kernel`) added before the single PixelShuffle.
- channel masks are resolved per layer; channels are reordered [dense; sparse] and every
  3x3 kernel is split by (input kind, output kind) (`split_kernel`). The deploy SMB layer
  computes  dense_in -> [dense; sparse] and sparse_in -> [dense; sparse]  as two convs and
  gates with the spatial mask by multiplication: dense outputs get d2d + m * s2d, sparse
  outputs m * (d2s + s2s). The collect 1x1's columns follow the reordering.
  This dense-masked graph runs on any input size: it is what ONNX/TFLite export.
Its layer widths follow the learned masks, so it is always derived from a training-layout
checkpoint; a saved deploy state_dict is refused with a message saying so.
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
from edgesr.nn.bicubic import bicubic_kernel, bicubic_phases, bicubic_upsample
from edgesr.nn.layers import CALayer, MeanShift
from edgesr.resources import Footprint

SCALES = (2, 3, 4)
LAYERS = 4  # conv layers per SMB (fixed in the paper and the authors' code)
REDUCTION = 16  # channel attention reduction
SPARSITY_WEIGHT = 0.1  # the paper's lambda; small variants train with less (their masks collapse at 0.1:
# computing nowhere then costs less than the L1 the body gains, see training/in_progress/README.md)
PRESETS = (
    "C64-K5",  # the paper's SMSR (official checkpoints)
    "C32-K3",  # CPU-friendly
    "C16-K2",  # tiny: tests and quick checks
)
_VARIANT = re.compile(r"^C(\d+)-K(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class SMSRConfig(DataclassConfig):
    """Architecture of one SMSR network: C feature channels, K sparse mask modules."""

    channels: int = 64
    modules: int = 5
    scale: int = 4
    colors: int = 3
    pixel_range: float = 255.0

    def __post_init__(self) -> None:
        problems = []
        if self.channels < 4 or self.channels % 4:
            problems.append(f"channels {self.channels} must be a positive multiple of 4 (mask branch uses C/4)")
        if self.modules < 1:
            problems.append("at least one sparse mask module (K >= 1)")
        if self.scale not in SCALES:
            problems.append(f"scale {self.scale} is not one of {', '.join(map(str, SCALES))}")
        if self.colors != 3:
            problems.append("SMSR is an RGB model (colors = 3)")
        if problems:
            raise UserError("invalid smsr config: " + "; ".join(problems))

    @property
    def squeeze_channels(self) -> int:
        return max(1, self.channels // REDUCTION)

    @property
    def variant(self) -> str:
        return f"C{self.channels}-K{self.modules}"


def parse_variant(variant: str, scale: int, pixel_range: float = 255.0) -> SMSRConfig:
    """'C64-K5' -> config (C channels, K sparse mask modules)."""
    match = _VARIANT.match(variant.strip())
    if not match:
        raise UserError(f"unknown smsr variant '{variant}': use C<channels>-K<modules>, e.g. {', '.join(PRESETS)}")
    return SMSRConfig(int(match.group(1)), int(match.group(2)), scale, 3, pixel_range)


# --- shared pieces -------------------------------------------------------------------------

def gumbel_softmax(logits: torch.Tensor, dim: int, tau: float) -> torch.Tensor:
    """Soft Gumbel-softmax sample (the authors' form: softmax((logits + g) / tau))."""
    u = torch.rand_like(logits).clamp_(min=torch.finfo(logits.dtype).tiny)
    return ((logits - torch.log(-torch.log(u))) / tau).softmax(dim)


def pad_to_even(x: torch.Tensor) -> torch.Tensor:
    """Replicate-pad one row/column at the bottom/right where H/W is odd (no Python branch, so
    an exported graph keeps the size-dependent padding)."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")


def spatial_mask_branch(channels: int) -> nn.Sequential:
    c = channels // 4
    return nn.Sequential(nn.Conv2d(channels, c, 3, 1, 1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(c, c, 3, 1, 1),
                         nn.ReLU(), nn.ConvTranspose2d(c, 2, 3, 2, 1, output_padding=1))


def hard_spatial_mask(logits: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) logits -> (B, 1, H, W) float mask: 1 where logit1 > logit0."""
    return (logits[:, 1:] > logits[:, :1]).to(logits.dtype)


def sparse_channels(ch_mask: torch.Tensor) -> torch.Tensor:
    """(1, C, L, 2) channel-mask logits -> (L, C) bool, True = sparse (argmax; a tie is dense)."""
    return (ch_mask[0, :, :, 1] > ch_mask[0, :, :, 0]).t()


# --- training graph ------------------------------------------------------------------------

class SMB(nn.Module):
    """Sparse mask block: 4 conv3x3 (no bias) + ReLU with per-layer channel masks, collect 1x1."""

    def __init__(self, channels: int):
        super().__init__()
        self.ch_mask = nn.Parameter(torch.rand(1, channels, LAYERS, 2))
        self.body = nn.Sequential(*[nn.Conv2d(channels, channels, 3, 1, 1, bias=False) for _ in range(LAYERS)])
        self.collect = nn.Conv2d(channels * LAYERS, channels, 1)

    def channel_masks(self, tau: float) -> torch.Tensor:
        """(1, C, L, 2): Gumbel-softmax sample in training, one-hot argmax in eval."""
        if self.training:
            return gumbel_softmax(self.ch_mask, 3, tau)
        sparse = sparse_channels(self.ch_mask).t()[None]
        return torch.stack([~sparse, sparse], dim=3).to(self.ch_mask.dtype)

    def forward(self, x: torch.Tensor, spa: torch.Tensor, ch: torch.Tensor) -> torch.Tensor:
        out, fea = [], x
        for i, conv in enumerate(self.body):
            dense_out, sparse_out = ch[:, :, i:i + 1, :1], ch[:, :, i:i + 1, 1:]
            if i == 0:
                y = conv(fea)
                fea = y * sparse_out * spa + y * dense_out
            else:
                dense_in, sparse_in = ch[:, :, i - 1:i, :1], ch[:, :, i - 1:i, 1:]
                yd, ys = conv(fea * dense_in), conv(fea * sparse_in)
                fea = yd * sparse_out * spa + yd * dense_out + ys * sparse_out * spa + ys * dense_out * spa
            fea = F.relu(fea)
            out.append(fea)
        return self.collect(torch.cat(out, 1))


class SMM(nn.Module):
    """Sparse mask module: spatial mask branch, SMB, channel attention, + input."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.spa_mask = spatial_mask_branch(channels)
        self.body = SMB(channels)
        self.ca = CALayer(channels, squeeze)

    def forward(self, x: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (output, spatial mask (B, 1, H, W), channel mask (1, C, L, 2))."""
        logits = self.spa_mask(x)
        spa = gumbel_softmax(logits, 1, tau)[:, 1:] if self.training else hard_spatial_mask(logits)
        ch = self.body.channel_masks(tau)
        return self.ca(self.body(x, spa, ch)) + x, spa, ch


class SMSR(nn.Module):
    """Training graph. In train mode the forward also stores `last_sparsity` (the mean fraction
    of positions computed, per the authors' sparsity loss) for `training_loss`."""

    def __init__(self, config: SMSRConfig):
        super().__init__()
        c = config.channels
        self.config = config
        self.tau = 1.0
        self.regularization = SPARSITY_WEIGHT  # lambda, the sparsity term's weight after its warm-up
        self.last_sparsity: torch.Tensor | None = None
        self.sub_mean = MeanShift(config.pixel_range, -1)
        self.head = nn.Sequential(nn.Conv2d(3, c, 3, 1, 1), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1))
        self.body = nn.Sequential(*[SMM(c, config.squeeze_channels) for _ in range(config.modules)])
        self.collect = nn.Sequential(nn.Conv2d(c * config.modules, c, 1), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1))
        self.tail = nn.Sequential(nn.Conv2d(c, 3 * config.scale ** 2, 3, 1, 1), nn.PixelShuffle(config.scale))
        self.add_mean = MeanShift(config.pixel_range, +1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w, s = x.shape[-2], x.shape[-1], self.config.scale
        x0 = self.sub_mean(pad_to_even(x))
        feat = self.head(x0)
        fea, outs, sparsity = feat, [], []
        for smm in self.body:
            fea, spa, ch = smm(fea, self.tau)
            outs.append(fea)
            # mean over (channel, layer, position) of spa * ch_sparse + ch_dense, as the authors' loss
            sparsity.append(spa.mean() * ch[..., 1].mean() + ch[..., 0].mean())
        y = self.collect(torch.cat(outs, 1)) + feat
        y = self.tail(y) + bicubic_upsample(x0, s)
        self.last_sparsity = torch.stack(sparsity).mean() if self.training else None
        return self.add_mean(y)[..., :s * h, :s * w]

    def training_loss(self, lr: torch.Tensor, hr: torch.Tensor, progress: float) -> torch.Tensor:
        """L1 + lambda * sparsity at training progress in [0, 1), with the authors' per-epoch
        schedules mapped onto a 1000-epoch run (their released model is model_1000.pt):
        tau = max(1 - (epoch-1)/500, 0.4) -> max(1 - 2p, 0.4); lambda = w * min((epoch-1)/50, 1)
        -> w * min(20p, 1), w = `regularization` (the paper's 0.1). tau is applied (the authors'
        trainer never did). L1 is on 0..255, so computing every position costs w grey levels."""
        self.tau = max(1.0 - 2.0 * progress, 0.4)
        sr = self(lr)
        return F.l1_loss(sr, hr) + self.regularization * min(20.0 * progress, 1.0) * self.last_sparsity

    def reparameterize(self) -> SMSRDeploy:
        """The exact dense-masked deploy graph (eval mode), see the module docstring."""
        return SMSRDeploy.from_training(self)


# --- re-parameterization -------------------------------------------------------------------

@dataclass(frozen=True)
class KernelParts:
    """One 3x3 (or 1x1) kernel split by (input kind, output kind)."""

    d2d: torch.Tensor
    d2s: torch.Tensor
    s2d: torch.Tensor
    s2s: torch.Tensor


def split_kernel(weight: torch.Tensor, sparse_in: torch.Tensor, sparse_out: torch.Tensor) -> KernelParts:
    """Split an (out, in, kh, kw) kernel by output kind (sparse_out, bool (out,)) and input kind
    (sparse_in, bool (in,)); channels keep their order within each kind. Parts may be empty."""
    dense_out, dense_in = ~sparse_out, ~sparse_in
    return KernelParts(weight[dense_out][:, dense_in], weight[sparse_out][:, dense_in],
                       weight[dense_out][:, sparse_in], weight[sparse_out][:, sparse_in])


def dense_first_order(sparse: torch.Tensor) -> torch.Tensor:
    """Channel permutation putting dense channels first, then sparse (stable within a kind)."""
    return torch.cat([torch.nonzero(~sparse).flatten(), torch.nonzero(sparse).flatten()])


class DeployLayer(nn.Module):
    """One SMB layer in dense-masked form: inputs [dense; sparse], outputs [dense; sparse].
    from_dense: conv(dense in -> all out); from_sparse: conv(sparse in -> all out) (None if empty)."""

    def __init__(self, dense_in: int, sparse_in: int, dense_out: int, sparse_out: int):
        super().__init__()
        out = dense_out + sparse_out
        self.counts = (dense_in, sparse_in, dense_out, sparse_out)
        self.from_dense = nn.Conv2d(dense_in, out, 3, 1, 1, bias=False) if dense_in else None
        self.from_sparse = nn.Conv2d(sparse_in, out, 3, 1, 1, bias=False) if sparse_in else None

    def forward(self, x: torch.Tensor, spa: torch.Tensor) -> torch.Tensor:
        dense_in, sparse_in, dense_out, sparse_out = self.counts
        y = None
        if self.from_dense is not None:
            y = self.from_dense(x[:, :dense_in] if sparse_in else x)
            if sparse_out:  # dense -> sparse runs only at masked pixels
                y = torch.cat([y[:, :dense_out], y[:, dense_out:] * spa], 1) if dense_out else y * spa
        if self.from_sparse is not None:  # sparse -> anything runs only at masked pixels
            z = self.from_sparse(x[:, dense_in:] if dense_in else x) * spa
            y = z if y is None else y + z
        return F.relu(y)


class DeploySMM(nn.Module):
    """An SMM with resolved channel masks: hard spatial mask, split layers, CA, + input."""

    def __init__(self, channels: int, squeeze: int, sparse: torch.Tensor):
        super().__init__()
        self.register_buffer("sparse", sparse.clone())  # (L, C) bool, the resolved channel kinds
        counts = [int(s.sum()) for s in sparse]
        ins = [(channels, 0)] + [(channels - n, n) for n in counts[:-1]]
        self.spa_mask = spatial_mask_branch(channels)
        self.layers = nn.ModuleList(DeployLayer(di, si, channels - n, n) for (di, si), n in zip(ins, counts))
        self.collect = nn.Conv2d(channels * LAYERS, channels, 1)
        self.ca = CALayer(channels, squeeze)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.masked(x, hard_spatial_mask(self.spa_mask(x)))

    def masked(self, x: torch.Tensor, spa: torch.Tensor) -> torch.Tensor:
        """The SMM given its (B, 1, H, W) spatial mask, dense-masked."""
        out, fea = [], x
        for layer in self.layers:
            fea = layer(fea, spa)
            out.append(fea)
        return self.ca(self.collect(torch.cat(out, 1))) + x


class SMSRDeploy(nn.Module):
    """Deploy graph: x + input_offset, head, dense-masked SMMs, collect, tail conv with
    add_mean folded in, + fixed bicubic-phase conv on the input, one PixelShuffle. The forward
    replicate-pads odd H/W to even and crops the output back (`pads_to_multiple`): a runner may
    do that padding itself and run the graph on even sides only (an ExecuTorch export does)."""

    pads_to_multiple = 2

    def __init__(self, config: SMSRConfig, sparse: list[torch.Tensor]):
        super().__init__()
        c, s = config.channels, config.scale
        self.config = config
        self.register_buffer("input_offset", torch.zeros(1, 3, 1, 1))
        self.register_buffer("bicubic", bicubic_kernel(s).float())
        self.head = nn.Sequential(nn.Conv2d(3, c, 3, 1, 1), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1))
        self.body = nn.ModuleList(DeploySMM(c, config.squeeze_channels, m) for m in sparse)
        self.collect = nn.Sequential(nn.Conv2d(c * config.modules, c, 1), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1))
        self.tail = nn.Sequential(nn.Conv2d(c, 3 * s * s, 3, 1, 1), nn.PixelShuffle(s))

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Even-padded input -> (head features, input after the offset) (shared with the sparse path)."""
        return self.head(x + self.input_offset), x

    def upsample(self, feat: torch.Tensor, outs: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """collect + long skip, tail, + bicubic phases, PixelShuffle (shared with the sparse path)."""
        y = self.collect(torch.cat(outs, 1)) + feat
        return self.tail[1](self.tail[0](y) + bicubic_phases(x, self.bicubic))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w, s = x.shape[-2], x.shape[-1], self.config.scale
        x = pad_to_even(x)
        feat, _ = self.features(x)
        fea, outs = feat, []
        for smm in self.body:
            fea = smm(fea)
            outs.append(fea)
        return self.upsample(feat, outs, x)[..., :s * h, :s * w]

    @classmethod
    def from_training(cls, train: SMSR) -> SMSRDeploy:
        """Resolve masks, reorder channels [dense; sparse], split kernels, fold the MeanShifts."""
        cfg, ref = train.config, train.head[0].weight
        masks = [sparse_channels(smm.body.ch_mask.detach()) for smm in train.body]
        deploy = cls(cfg, masks).to(ref.device, ref.dtype)
        head_w, offset = fold_input_affine(train.sub_mean.weight, train.sub_mean.bias, train.head[0].weight)
        tail_w, tail_b = fold_output_affine(train.tail[0].weight, train.tail[0].bias,
                                            _per_phase(train.add_mean.weight, cfg.scale),
                                            _per_phase_bias(train.add_mean.bias, cfg.scale))
        # bicubic(sub_mean(x)) = A1 bicubic(x) + c1 (weights sum to 1): through add_mean that is
        # (A2 A1) bicubic(x) + A2 c1, so the kernel mixes colours by A2 A1 and A2 c1 joins the tail bias.
        a1, c1 = train.sub_mean.weight.detach().double().flatten(1), train.sub_mean.bias.detach().double()
        a2 = train.add_mean.weight.detach().double().flatten(1)
        tail_b = tail_b + (a2 @ c1).repeat_interleave(cfg.scale ** 2)
        with torch.no_grad():
            deploy.input_offset.copy_(offset.view(1, 3, 1, 1))
            deploy.bicubic.copy_(bicubic_kernel(cfg.scale, a2 @ a1))
            deploy.head.load_state_dict(train.head.state_dict())
            deploy.head[0].weight.copy_(head_w)
            deploy.collect.load_state_dict(train.collect.state_dict())
            deploy.tail[0].weight.copy_(tail_w)
            deploy.tail[0].bias.copy_(tail_b)
            for smm, target, sparse in zip(train.body, deploy.body, masks):
                _load_smm(smm, target, sparse)
        return deploy.eval()


def _per_phase(affine_w: torch.Tensor, scale: int) -> torch.Tensor:
    """A 3x3 colour matrix (as a 1x1 conv) acting on the 3*s*s pre-shuffle channels."""
    a = affine_w.detach().double().flatten(1)
    return torch.kron(a, torch.eye(scale * scale, dtype=torch.float64)).view(3 * scale * scale, -1, 1, 1)


def _per_phase_bias(bias: torch.Tensor, scale: int) -> torch.Tensor:
    return bias.detach().double().repeat_interleave(scale * scale)


def _load_smm(smm: SMM, target: DeploySMM, sparse: torch.Tensor) -> None:
    """Copy one SMM into its deploy form: split kernels, reorder the collect's columns."""
    target.spa_mask.load_state_dict(smm.spa_mask.state_dict())
    target.ca.load_state_dict(smm.ca.state_dict())
    channels = sparse.shape[1]
    no_sparse = torch.zeros(channels, dtype=torch.bool)
    for i, (conv, layer) in enumerate(zip(smm.body.body, target.layers)):
        sparse_in = no_sparse if i == 0 else sparse[i - 1]
        parts = split_kernel(conv.weight.detach(), sparse_in, sparse[i])
        if layer.from_dense is not None:
            layer.from_dense.weight.copy_(torch.cat([parts.d2d, parts.d2s], 0))
        if layer.from_sparse is not None:
            layer.from_sparse.weight.copy_(torch.cat([parts.s2d, parts.s2s], 0))
    order = torch.cat([i * channels + dense_first_order(sparse[i]) for i in range(LAYERS)])
    target.collect.weight.copy_(smm.body.collect.weight.detach()[:, order])
    target.collect.bias.copy_(smm.body.collect.bias.detach())


# --- checkpoints ---------------------------------------------------------------------------

def is_deploy_state_dict(state_dict: dict) -> bool:
    """True for an SMSRDeploy state_dict (explicit input offset, split layers, no ch_mask)."""
    return "input_offset" in state_dict and "sub_mean.weight" not in state_dict


def _not_smsr(reason: str) -> UserError:
    return UserError(f"checkpoint is not an SMSR state_dict ({reason}); pass «model» for the network "
                     "it was trained as")


def config_from_state_dict(state_dict: dict, pixel_range: float = 255.0) -> SMSRConfig:
    """Infer C, K and the scale from the training-graph weight shapes."""
    if is_deploy_state_dict(state_dict):
        raise UserError("this is an SMSR deploy-graph checkpoint, whose layout depends on its learned channel "
                        "masks: pass the training checkpoint (edgesr re-parameterizes it itself)")
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    head = shapes.get("head.0.weight")
    if head is None or len(head) != 4:
        raise _not_smsr("no head.0.weight")
    channels, colors = head[0], head[1]
    if colors != 3:
        raise _not_smsr(f"head takes {colors} input channels, SMSR is RGB (3)")
    ids = sorted({int(m.group(1)) for k in shapes if (m := re.match(r"^body\.(\d+)\.body\.ch_mask$", k))})
    if not ids or ids != list(range(len(ids))):
        raise _not_smsr("no sparse mask modules body.<k>.body.ch_mask")
    masks = {shapes[f"body.{k}.body.ch_mask"] for k in ids}
    if masks != {(1, channels, LAYERS, 2)}:
        raise _not_smsr(f"channel masks {sorted(masks)} are not (1, {channels}, {LAYERS}, 2)")
    tail = shapes.get("tail.0.weight")
    scale = {12: 2, 27: 3, 48: 4}.get(tail[0]) if tail else None
    if scale is None:
        raise _not_smsr(f"tail conv {tail} is no x2/x3/x4 RGB layout (3*s*s outputs)")
    collect = shapes.get("collect.0.weight")
    if collect != (channels, channels * len(ids), 1, 1):
        raise _not_smsr(f"collect.0.weight {collect} does not join {len(ids)} modules of {channels} channels")
    return SMSRConfig(channels, len(ids), scale, 3, pixel_range)


def deploy_graph_from_config(config: SMSRConfig) -> nn.Module:
    """SMSR deploy graphs are built by re-parameterization only (their shapes follow the masks)."""
    raise UserError(f"smsr {config.variant}: load the training checkpoint; the deploy graph is derived from it")


def footprint(config: SMSRConfig) -> Footprint:
    """Parameters and layers of the training graph, from the config alone (nothing is built)."""
    c, q, r, k, s = config.channels, config.channels // 4, config.squeeze_channels, config.modules, config.scale

    def conv(cin: int, cout: int, size: int = 3, bias: bool = True) -> int:
        return size * size * cin * cout + (cout if bias else 0)

    smm = (conv(c, q) + conv(q, q) + conv(q, 2)  # spatial mask branch (the transposed conv has 2 outputs)
           + c * LAYERS * 2 + LAYERS * conv(c, c, bias=False) + conv(LAYERS * c, c, 1)  # SMB
           + conv(c, r, 1) + conv(r, c, 1))  # channel attention
    params = (2 * conv(3, 3, 1) + conv(3, c) + conv(c, c) + k * smm + conv(k * c, c, 1) + conv(c, c)
              + conv(c, 3 * s * s))
    return Footprint(params, 10 + k * 20)
