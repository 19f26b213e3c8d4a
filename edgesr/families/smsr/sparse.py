"""SMSR's sparse inference: convolutions that read or write sparse channels run only at the
pixels the spatial mask selects (gather -> GEMM -> scatter), sharing an SMSRDeploy's weights.

Per SMB layer l (channels [dense; sparse] as in the deploy graph):
- dense -> dense: an ordinary conv3x3 over the whole image (F.conv2d);
- dense -> sparse: the 3x3 neighbourhoods of the dense input at the N masked pixels are
  gathered into an (N, 9*C_d) matrix (rows of a channels-last, zero-padded map) and
  multiplied by the (9*C_d, C_s) kernel;
- sparse -> dense and sparse -> sparse: sparse features live as (N, C_s) rows; a neighbour
  table (N, 9) points at the rows of the 8-neighbours (or at one zero row where a neighbour is
  unmasked or outside), so one gather + GEMM gives both parts; the dense part is scattered
  (index_add) into the dense output at the masked pixels.
The SMB's collect 1x1 is split the same way (dense columns as a conv, sparse rows as a GEMM
scattered into the output). Masked positions are counted over the whole batch, so a batch
of images with different masks runs in one pass. The mask branch, channel attention, head,
collect, tail and bicubic residual are the deploy graph's own (dense) modules.

Measured, not assumed: `benchmarks/smsr_sparse.py` times this against the dense-masked graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgesr.families.smsr.model import DeploySMM, SMSRDeploy, hard_spatial_mask, pad_to_even


def _gemm_kernel(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, kh, kw) conv kernel -> (kh*kw*in, out) matrix for rows gathered as (ky, kx, c)."""
    return weight.detach().permute(2, 3, 1, 0).reshape(-1, weight.shape[0]).contiguous()


@dataclass
class _SparseLayer:
    dense_in: int
    sparse_in: int
    dense_out: int
    sparse_out: int
    d2d: torch.Tensor | None  # conv kernel (dense_out, dense_in, 3, 3)
    d2s: torch.Tensor | None  # GEMM (9*dense_in, sparse_out)
    s2all: torch.Tensor | None  # GEMM (9*sparse_in, dense_out + sparse_out)


def _layers(smm: DeploySMM) -> list[_SparseLayer]:
    layers = []
    for layer in smm.layers:
        di, si, do, so = layer.counts
        w_d = layer.from_dense.weight if layer.from_dense is not None else None
        layers.append(_SparseLayer(
            di, si, do, so,
            w_d[:do].detach().contiguous(memory_format=torch.channels_last) if w_d is not None and do else None,
            _gemm_kernel(w_d[do:]) if w_d is not None and so else None,
            _gemm_kernel(layer.from_sparse.weight) if layer.from_sparse is not None else None))
    return layers


def _neighbours(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For a (B, 1, H, W) 0/1 mask: flat indices of the N masked pixels in (B*H*W), their 3x3
    neighbours' flat indices in the zero-padded (B, H+2, W+2) map (N, 9), and the neighbours'
    row numbers among the masked pixels (N, 9; N = the extra zero row)."""
    b, _, h, w = mask.shape
    flat = torch.nonzero(mask.reshape(-1)).flatten()
    n = flat.numel()
    bi, rest = flat // (h * w), flat % (h * w)
    hi, wi = rest // w, rest % w
    dy = torch.arange(3, device=mask.device).repeat_interleave(3)
    dx = torch.arange(3, device=mask.device).repeat(3)
    padded = (bi[:, None] * (h + 2) + hi[:, None] + dy) * (w + 2) + wi[:, None] + dx
    rows = torch.full((b * (h + 2) * (w + 2),), n, dtype=torch.long, device=mask.device)
    rows[(bi * (h + 2) + hi + 1) * (w + 2) + wi + 1] = torch.arange(n, device=mask.device)
    return flat, padded, rows[padded]


def _rows_padded(dense: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> zero-padded channels-last rows (B*(H+2)*(W+2), C)."""
    return F.pad(dense.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1)).reshape(-1, dense.shape[1])


def _as_rows(dense: torch.Tensor) -> torch.Tensor:
    """A channels-last (B, C, H, W) tensor as a (B*H*W, C) view (writes go through)."""
    return dense.permute(0, 2, 3, 1).view(-1, dense.shape[1])


class SparseSMM(nn.Module):
    """One SMM computed sparsely; `density` is the masked fraction of the last call. With a
    `crossover`, a mask at least that dense runs the dense-masked SMM instead (same result)."""

    def __init__(self, smm: DeploySMM, crossover: float | None = None):
        super().__init__()
        self.smm, self.crossover = smm, crossover
        self.layers = _layers(smm)
        c = smm.collect.weight.shape[0]
        dense_cols, sparse_cols = [], []
        for i, layer in enumerate(self.layers):
            start = i * c
            dense_cols += range(start, start + layer.dense_out)
            sparse_cols += range(start + layer.dense_out, start + c)
        w = smm.collect.weight.detach()[:, :, 0, 0]
        self.collect_dense = w[:, dense_cols].contiguous()[:, :, None, None]
        self.collect_sparse = w[:, sparse_cols].t().contiguous()
        self.density = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = hard_spatial_mask(self.smm.spa_mask(x))
        self.density = float(mask.mean())
        if self.crossover is not None and self.density >= self.crossover:
            return self.smm.masked(x, mask)
        flat, nbr_dense, nbr_sparse = _neighbours(mask)
        n, (b, _, h, w) = flat.numel(), x.shape
        dense, sparse = x.contiguous(memory_format=torch.channels_last), x.new_zeros(n, 0)
        dense_maps, sparse_rows = [], []
        for layer in self.layers:
            out_d = (F.conv2d(dense, layer.d2d, padding=1) if layer.d2d is not None
                     else x.new_zeros(b, layer.dense_out, h, w)).contiguous(memory_format=torch.channels_last)
            out_s = x.new_zeros(n, layer.sparse_out)
            if layer.d2s is not None:
                gathered = _rows_padded(dense)[nbr_dense].reshape(n, 9 * layer.dense_in)
                out_s = out_s + gathered @ layer.d2s
            if layer.s2all is not None:
                rows = torch.cat([sparse, sparse.new_zeros(1, layer.sparse_in)])
                both = rows[nbr_sparse].reshape(n, 9 * layer.sparse_in) @ layer.s2all
                if layer.dense_out:
                    _as_rows(out_d).index_add_(0, flat, both[:, :layer.dense_out])
                out_s = out_s + both[:, layer.dense_out:]
            dense, sparse = F.relu(out_d), F.relu(out_s)
            dense_maps.append(dense)
            sparse_rows.append(sparse)
        bias = self.smm.collect.bias
        y = (F.conv2d(torch.cat(dense_maps, 1), self.collect_dense, bias) if self.collect_dense.shape[1]
             else bias.view(1, -1, 1, 1).expand(b, -1, h, w))  # every channel sparse: bias only
        y = y.contiguous(memory_format=torch.channels_last)
        _as_rows(y).index_add_(0, flat, torch.cat(sparse_rows, 1) @ self.collect_sparse)
        return self.smm.ca(y) + x


class SMSRSparse(nn.Module):
    """Sparse inference of an SMSRDeploy (same weights, same output up to float rounding). The
    GEMM kernels are copied from the deploy graph when this is built (CPU inference).
    `crossover`: spatial density from which an SMM runs dense-masked instead (None: never)."""

    def __init__(self, deploy: SMSRDeploy, crossover: float | None = None):
        super().__init__()
        self.deploy = deploy
        self.body = nn.ModuleList(SparseSMM(smm, crossover) for smm in deploy.body)

    @property
    def densities(self) -> list[float]:
        """Spatial mask density of each SMM in the last call (over the whole batch)."""
        return [smm.density for smm in self.body]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w, s = x.shape[-2], x.shape[-1], self.deploy.config.scale
        x = pad_to_even(x)
        feat, x = self.deploy.features(x)
        fea, outs = feat, []
        for smm in self.body:
            fea = smm(fea)
            outs.append(fea)
        return self.deploy.upsample(feat, outs, x)[..., :s * h, :s * w]


def sparse_macs_saved_per_pixel(deploy: SMSRDeploy, densities: list[float]) -> float:
    """MACs per (even-padded) pixel the sparse path skips relative to the dense-masked graph,
    given each SMM's spatial density: every product that reads or writes a sparse channel
    runs at a fraction `density` of the pixels instead of all of them."""
    saved = 0.0
    for smm, density in zip(deploy.body, densities, strict=True):
        per_pixel = 0
        for layer in smm.layers:
            di, si, do, so = layer.counts
            per_pixel += 9 * (di * so + si * (do + so)) + smm.collect.weight.shape[0] * so
        saved += (1.0 - density) * per_pixel
    return saved



def measured_densities(deploy: SMSRDeploy, count: int = 4, size: int = 64) -> list[float]:
    """Mean spatial density per SMM over `count` crops of the bundled photos."""
    from edgesr.images import calibration_crops

    sparse, totals = SMSRSparse(deploy), [0.0] * len(deploy.body)
    with torch.inference_mode():
        for crop in calibration_crops(3, deploy.config.pixel_range, count, size):
            sparse(torch.from_numpy(crop))
            totals = [t + d for t, d in zip(totals, sparse.densities)]
    return [t / count for t in totals]


def cost_notes(deploy: SMSRDeploy) -> list[str]:
    """MACs per LR pixel of the dense-masked graph and of the sparse path at the spatial
    densities these weights produce on photo crops."""
    from edgesr.profile import macs_per_lr_pixel

    densities = measured_densities(deploy)
    dense = macs_per_lr_pixel(deploy, 3)
    sparse = dense - sparse_macs_saved_per_pixel(deploy, densities)
    kinds = [float(smm.sparse.float().mean()) for smm in deploy.body]
    return [f"sparse   spatial density {sum(densities) / len(densities):.2f} (per SMM "
            f"{', '.join(f'{d:.2f}' for d in densities)}; 4 photo crops 64x64), sparse channels "
            f"{sum(kinds) / len(kinds):.2f} of each layer",
            f"MACs     {sparse:,.0f} per LR pixel at that sparsity ({sparse / dense:.2f} of dense {dense:,.0f}) "
            "if the sparse path is used"]
