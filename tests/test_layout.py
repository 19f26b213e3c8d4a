"""PixelShuffle (NCHW) vs depth_to_space (NHWC): the channel permutation the exporter relies on."""

import numpy as np
import pytest
import torch

from edgesr.layout import depth_to_space_order, oihw_to_hwio


def _depth_to_space_nhwc(x: np.ndarray, s: int) -> np.ndarray:
    """TensorFlow's DCR depth_to_space, written out in numpy (channel (i*s + j)*C + c)."""
    n, h, w, cs2 = x.shape
    c = cs2 // (s * s)
    return x.reshape(n, h, w, s, s, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h * s, w * s, c)


@pytest.mark.parametrize("colors", [1, 3])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_permuted_depth_to_space_equals_pixel_shuffle(colors, scale):
    x = np.random.default_rng(0).random((1, colors * scale * scale, 5, 7)).astype(np.float32)
    expected = torch.nn.functional.pixel_shuffle(torch.from_numpy(x), scale).numpy().transpose(0, 2, 3, 1)
    reordered = x[:, depth_to_space_order(colors, scale)].transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(_depth_to_space_nhwc(reordered, scale), expected)


def test_unpermuted_channels_do_not_match_for_rgb():
    x = np.random.default_rng(1).random((1, 12, 4, 4)).astype(np.float32)
    expected = torch.nn.functional.pixel_shuffle(torch.from_numpy(x), 2).numpy().transpose(0, 2, 3, 1)
    assert np.abs(_depth_to_space_nhwc(x.transpose(0, 2, 3, 1), 2) - expected).max() > 0.1


def test_numpy_reference_matches_tensorflow():
    from edgesr.nn.tf import tf

    x = np.random.default_rng(2).random((1, 3, 4, 12)).astype(np.float32)
    np.testing.assert_array_equal(tf.nn.depth_to_space(x, 2).numpy(), _depth_to_space_nhwc(x, 2))


def test_oihw_to_hwio():
    k = np.arange(2 * 3 * 3 * 3).reshape(2, 3, 3, 3)
    assert oihw_to_hwio(k)[1, 2, 0, 1] == k[1, 0, 1, 2]
