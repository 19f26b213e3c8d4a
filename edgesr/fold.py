"""Pure kernel-fusion math for re-parameterization.

Every function takes and returns plain tensors (OIHW kernels, per-channel biases).
The arithmetic runs in float64 on the tensors' own device; callers cast back. The branch folds
(fuse_*, depthwise_to_dense, sum_kernels) keep autograd's graph, so a training step can run the
folded conv and still update every branch: the fold is linear in each branch's weights, so the
gradients equal the multi-branch graph's (online re-parameterization, Hu et al., CVPR 2022).
"""

from __future__ import annotations

import torch

Kernel = tuple[torch.Tensor, torch.Tensor]

SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))
LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float64)


def _f64_grad(t: torch.Tensor) -> torch.Tensor:
    """float64 copy that stays in autograd's graph (differentiable folds)."""
    return t.to(torch.float64)


def fuse_1x1_kxk(k0: torch.Tensor, b0: torch.Tensor, k1: torch.Tensor, b1: torch.Tensor) -> Kernel:
    """Fold conv1x1 (k0: M,I,1,1; b0: M) followed by a dense conv (k1: O,M,k,k; b1: O).

    Exact when the 1x1 output is padded with its bias (= 1x1 conv of a zero-padded input):
    K[o,i] = sum_m k1[o,m] * k0[m,i];  B[o] = b1[o] + sum_{m,u,v} k1[o,m,u,v] * b0[m].
    """
    k0, b0, k1, b1 = _f64_grad(k0), _f64_grad(b0), _f64_grad(k1), _f64_grad(b1)
    kernel = torch.einsum("omuv,mi->oiuv", k1, k0[:, :, 0, 0])
    bias = b1 + torch.einsum("omuv,m->o", k1, b0)
    return kernel, bias


def depthwise_to_dense(kernel: torch.Tensor) -> torch.Tensor:
    """Turn a depthwise kernel (C,1,k,k) into the equivalent dense kernel (C,C,k,k)."""
    kernel = _f64_grad(kernel)
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
    dense = depthwise_to_dense(_f64_grad(scale).reshape(-1, 1, 1, 1) * _f64_grad(template))
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
    weight = sum(_f64_grad(k) for k, _ in kernels)
    bias = sum(_f64_grad(b) for _, b in kernels)
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


# --- 2x2 blocks: the int8-friendly form of a conv3x3 chain (edgesr/nn/blocked.py) -------------
# A map of H x W pixels and C channels is stored as H/B x W/B blocks of B*B*C channels, channel
# (p*B + q)*C + c holding pixel (B*i + p, B*j + q) of channel c. A conv3x3 on pixels is then a
# conv3x3 on blocks (output sub-pixel p, input sub-pixel p', block offset d: tap B*d + p' - p).


def blocked_conv3x3(weight: torch.Tensor, block: int = 2) -> torch.Tensor:
    """conv3x3 (O, I, 3, 3), padding 1, on pixels -> the same conv on blocks: (B²O, B²I, 3, 3)."""
    w = _f64(weight)
    out_c, in_c = w.shape[:2]
    kernel = w.new_zeros(block * block * out_c, block * block * in_c, 3, 3)
    for p in range(block):
        for q in range(block):
            for pi in range(block):
                for qi in range(block):
                    for di in (-1, 0, 1):
                        for dj in (-1, 0, 1):
                            ty, tx = block * di + pi - p, block * dj + qi - q
                            if abs(ty) <= 1 and abs(tx) <= 1:
                                o, i = (p * block + q) * out_c, (pi * block + qi) * in_c
                                kernel[o:o + out_c, i:i + in_c, di + 1, dj + 1] = w[:, :, ty + 1, tx + 1]
    return kernel


def blocked_entry(weight: torch.Tensor, block: int = 2) -> torch.Tensor:
    """conv3x3 (O, I, 3, 3) on the image -> a (B+2)x(B+2) conv of stride B, padding 1, whose output
    is the conv's result in blocks: (B²O, I, B+2, B+2); output sub-pixel (p, q) reads taps (p.., q..)."""
    w = _f64(weight)
    out_c, in_c = w.shape[:2]
    kernel = w.new_zeros(block * block * out_c, in_c, block + 2, block + 2)
    for p in range(block):
        for q in range(block):
            o = (p * block + q) * out_c
            kernel[o:o + out_c, :, p:p + 3, q:q + 3] = w
    return kernel


def blocked_bias(bias: torch.Tensor, block: int = 2) -> torch.Tensor:
    """A per-channel bias repeated for every sub-pixel of a block."""
    return _f64(bias).repeat(block * block)


def blocked_shuffle_order(channels: int, scale: int, block: int = 2) -> list[int]:
    """Blocked channel feeding each channel of PixelShuffle(B*s): the last conv's outputs (sub-pixel
    (p, q), channel o = c*s² + u*s + v of PixelShuffle(s)) land on colour c, row p*s + u, column q*s + v."""
    colors, side = channels // (scale * scale), block * scale
    order = [0] * (block * block * channels)
    for p in range(block):
        for q in range(block):
            for c in range(colors):
                for u in range(scale):
                    for v in range(scale):
                        source = (p * block + q) * channels + c * scale * scale + u * scale + v
                        order[c * side * side + (p * scale + u) * side + q * scale + v] = source
    return order


def blocked_skip(colors: int, scale: int, block: int = 2) -> torch.Tensor:
    """The global residual (LR pixel added to its s*s outputs) as a BxB conv of stride B on the
    image with 0/1 weights, its outputs in PixelShuffle(B*s) order: (colors*(Bs)², colors, B, B)."""
    side = block * scale
    kernel = torch.zeros(colors * side * side, colors, block, block, dtype=torch.float64)
    for c in range(colors):
        for row in range(side):
            for col in range(side):
                kernel[c * side * side + row * side + col, c, row // scale, col // scale] = 1.0
    return kernel


def relu_pair(weight: torch.Tensor, bias: torch.Tensor, slopes: torch.Tensor) -> tuple[Kernel, torch.Tensor]:
    """conv + PReLU(a) as conv + ReLU + conv1x1, exactly: prelu(z) = relu(z) - sign(a) relu(-|a| z).
    The conv emits [z, -|a| z] (2C channels, ReLU fused), the 1x1 [I, -diag(sign a)] recombines."""
    w, b, a = _f64(weight), _f64(bias), _f64(slopes).reshape(-1).expand(weight.shape[0])
    negative = -a.abs()
    kernel = torch.cat([w, negative[:, None, None, None] * w])
    eye = torch.eye(w.shape[0], dtype=torch.float64)
    combine = torch.cat([eye, -torch.diag(torch.sign(a))], dim=1)[:, :, None, None]
    return (kernel, torch.cat([b, negative * b])), combine
