"""The fold math, hit directly: every fused kernel must reproduce its branch exactly."""

import pytest
import torch
import torch.nn.functional as F

from edgesr import fold


def _bias_padded_1x1(x, k0, b0):
    """Reference: 1x1 conv, then pad its output with the bias (the ECBSR paper's definition)."""
    y = F.conv2d(x, k0, b0)
    out = b0.view(1, -1, 1, 1).expand(y.shape[0], -1, y.shape[2] + 2, y.shape[3] + 2).clone()
    out[:, :, 1:-1, 1:-1] = y
    return out


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("size", [(9, 9), (7, 12), (1, 5)])
def test_fuse_1x1_3x3_matches_sequence_including_borders(dtype, tol, size):
    g = torch.Generator().manual_seed(1)
    k0, b0 = torch.randn(6, 3, 1, 1, generator=g), torch.randn(6, generator=g)
    k1, b1 = torch.randn(4, 6, 3, 3, generator=g), torch.randn(4, generator=g)
    x = torch.rand(2, 3, *size, generator=g)
    reference = F.conv2d(_bias_padded_1x1(x.double(), k0.double(), b0.double()), k1.double(), b1.double())
    kernel, bias = fold.fuse_1x1_kxk(k0.to(dtype), b0.to(dtype), k1.to(dtype), b1.to(dtype))
    assert kernel.dtype == torch.float64 and kernel.shape == (4, 3, 3, 3)
    fused = F.conv2d(x.to(dtype), kernel.to(dtype), bias.to(dtype), padding=1)
    err = (fused.double() - reference).abs().max().item()
    assert err <= tol
    # the border rows/columns are where zero-padding the 1x1 output would go wrong
    assert (fused.double() - reference)[..., 0, :].abs().max().item() <= tol


def test_zero_padding_instead_of_bias_padding_breaks_the_fold():
    """Guards the test above: with zero padding the fold is wrong at the borders."""
    g = torch.Generator().manual_seed(2)
    k0, b0 = torch.randn(4, 2, 1, 1, generator=g), torch.randn(4, generator=g) + 1.0
    k1, b1 = torch.randn(3, 4, 3, 3, generator=g), torch.randn(3, generator=g)
    x = torch.rand(1, 2, 8, 8, generator=g, dtype=torch.float64)
    zero_padded = F.conv2d(F.conv2d(x, k0.double(), b0.double()), k1.double(), b1.double(), padding=1)
    kernel, bias = fold.fuse_1x1_kxk(k0, b0, k1, b1)
    fused = F.conv2d(x, kernel, bias, padding=1)
    assert (fused - zero_padded)[..., 0, :].abs().max() > 1e-3
    assert (fused - zero_padded)[..., 2:-2, 2:-2].abs().max() < 1e-12


@pytest.mark.parametrize("name", ["sobelx", "sobely", "laplacian"])
def test_scaled_template_fold_with_random_scale_and_bias(name):
    g = torch.Generator().manual_seed(3)
    channels = 5
    k0, b0 = torch.randn(channels, 3, 1, 1, generator=g), torch.randn(channels, generator=g)
    scale, bias = torch.randn(channels, 1, 1, 1, generator=g), torch.randn(channels, generator=g)
    template = fold.edge_template(name, channels)
    x = torch.rand(2, 3, 11, 6, generator=g, dtype=torch.float64)
    padded = _bias_padded_1x1(x, k0.double(), b0.double())
    reference = F.conv2d(padded, (scale * template).double(), bias.double(), groups=channels)
    kernel, fused_bias = fold.fuse_1x1_scaled_template(k0, b0, scale, template, bias)
    fused = F.conv2d(x, kernel, fused_bias, padding=1)
    assert (fused - reference).abs().max().item() <= 1e-12


def test_templates_are_the_papers_operators():
    assert fold.edge_template("sobelx", 1)[0, 0].tolist() == [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
    assert fold.edge_template("sobely", 1)[0, 0].tolist() == [[1, 2, 1], [0, 0, 0], [-1, -2, -1]]
    assert fold.edge_template("laplacian", 1)[0, 0].tolist() == [[0, 1, 0], [1, -4, 1], [0, 1, 0]]


def test_depthwise_to_dense_is_equivalent_to_grouped_conv():
    g = torch.Generator().manual_seed(4)
    dw = torch.randn(4, 1, 3, 3, generator=g, dtype=torch.float64)
    x = torch.rand(1, 4, 7, 7, generator=g, dtype=torch.float64)
    dense = fold.depthwise_to_dense(dw)
    assert torch.allclose(F.conv2d(x, dense, padding=1), F.conv2d(x, dw, padding=1, groups=4), atol=1e-12)


def test_identity_kernel_and_sum():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(1, 3, 6, 5, generator=g, dtype=torch.float64)
    k, b = torch.randn(3, 3, 3, 3, generator=g), torch.randn(3, generator=g)
    weight, bias = fold.sum_kernels([(k, b), (fold.identity_kernel(3), torch.zeros(3))])
    expected = F.conv2d(x, k.double(), b.double(), padding=1) + x
    assert (F.conv2d(x, weight, bias, padding=1) - expected).abs().max().item() <= 1e-12


def test_fold_runs_in_float64_whatever_the_input_dtype():
    k0, b0 = torch.randn(2, 2, 1, 1, dtype=torch.bfloat16), torch.randn(2, dtype=torch.bfloat16)
    k1, b1 = torch.randn(2, 2, 3, 3, dtype=torch.float16), torch.randn(2, dtype=torch.float16)
    kernel, bias = fold.fuse_1x1_kxk(k0, b0, k1, b1)
    assert kernel.dtype == bias.dtype == torch.float64
