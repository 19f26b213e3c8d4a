"""Pure kernel-fusion math for re-parameterization.

Every function takes and returns plain tensors (OIHW kernels, per-channel biases).
The arithmetic runs in float64 on the tensors' own device; callers cast back.
"""

from __future__ import annotations

import torch

Kernel = tuple[torch.Tensor, torch.Tensor]

SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))
LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float64)


def fuse_1x1_kxk(k0: torch.Tensor, b0: torch.Tensor, k1: torch.Tensor, b1: torch.Tensor) -> Kernel:
    """Fold conv1x1 (k0: M,I,1,1; b0: M) followed by a dense conv (k1: O,M,k,k; b1: O).

    Exact when the 1x1 output is padded with its bias (= 1x1 conv of a zero-padded input):
    K[o,i] = sum_m k1[o,m] * k0[m,i];  B[o] = b1[o] + sum_{m,u,v} k1[o,m,u,v] * b0[m].
    """
    k0, b0, k1, b1 = _f64(k0), _f64(b0), _f64(k1), _f64(b1)
    kernel = torch.einsum("omuv,mi->oiuv", k1, k0[:, :, 0, 0])
    bias = b1 + torch.einsum("omuv,m->o", k1, b0)
    return kernel, bias


def depthwise_to_dense(kernel: torch.Tensor) -> torch.Tensor:
    """Turn a depthwise kernel (C,1,k,k) into the equivalent dense kernel (C,C,k,k)."""
    kernel = _f64(kernel)
    channels = kernel.shape[0]
    eye = torch.eye(channels, dtype=kernel.dtype, device=kernel.device)
    return eye[:, :, None, None] * kernel[:, 0][:, None]


def edge_template(name: str, channels: int, dtype: torch.dtype = torch.float32,
                  device: torch.device | None = None) -> torch.Tensor:
    """The fixed depthwise template ('sobelx', 'sobely', 'laplacian') as a (C,1,3,3) tensor."""
    table = {"sobelx": SOBEL_X, "sobely": SOBEL_Y, "laplacian": LAPLACIAN}
    template = torch.tensor(table[name], dtype=dtype, device=device)
    return template.expand(channels, 1, 3, 3).clone()


def fuse_1x1_scaled_template(k0: torch.Tensor, b0: torch.Tensor, scale: torch.Tensor,
                             template: torch.Tensor, bias: torch.Tensor) -> Kernel:
    """Fold conv1x1 followed by a depthwise conv with kernel scale[c] * template[c] and bias."""
    dense = depthwise_to_dense(_f64(scale).reshape(-1, 1, 1, 1) * _f64(template))
    return fuse_1x1_kxk(k0, b0, dense, bias)


def identity_kernel(channels: int, size: int = 3, dtype: torch.dtype = torch.float64,
                    device: torch.device | None = None) -> torch.Tensor:
    """A (C,C,k,k) kernel whose convolution (with 'same' padding) is the identity."""
    kernel = torch.zeros(channels, channels, size, size, dtype=dtype, device=device)
    centre = size // 2
    kernel[torch.arange(channels), torch.arange(channels), centre, centre] = 1.0
    return kernel


def sum_kernels(kernels: list[Kernel]) -> Kernel:
    """Add parallel branches: their kernels and biases sum (all in float64)."""
    weight = sum(_f64(k) for k, _ in kernels)
    bias = sum(_f64(b) for _, b in kernels)
    return weight, bias


def fold_input_affine(affine_w: torch.Tensor, affine_b: torch.Tensor,
                      conv_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A zero-padded conv (conv_w) after a 1x1 affine z = A x + c, rewritten as the conv
    (conv_w . A) after z' = x + d with d = A^-1 c. Exact at the borders: the padded zeros
    of z' map to the padded zeros of z only if the offset d stays outside the conv.
    Returns (folded kernel, d), float64."""
    a = affine_w.detach().double().flatten(1)  # (out, in) of the 1x1 conv
    offset = torch.linalg.solve(a, affine_b.detach().double())
    kernel = torch.einsum("ojhw,ji->oihw", conv_w.detach().double(), a)
    return kernel, offset


def fold_output_affine(conv_w: torch.Tensor, conv_b: torch.Tensor, affine_w: torch.Tensor,
                       affine_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1x1 affine y = A z + c after a conv (W, b) folded into the conv: (A W, A b + c), float64."""
    a = affine_w.detach().double().flatten(1)
    kernel = torch.einsum("oj,jihw->oihw", a, conv_w.detach().double())
    return kernel, a @ conv_b.detach().double() + affine_b.detach().double()
