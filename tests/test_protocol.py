"""The evaluation protocols and MATLAB's uint8 imresize, against values worked out by hand."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from edgesr.data import degrade
from edgesr.errors import UserError
from edgesr.protocol import PROTOCOLS, get_protocol, quantize
from edgesr.resize import imresize, imresize_uint8, matlab_uint8

# A 4x4 8-bit RGB pair whose only difference inside the 1-pixel border crop is one pixel.
HR8 = np.full((4, 4, 3), 100.0)
SR8 = HR8.copy()
SR8[1, 2] = (110.0, 100.0, 100.0)  # red +10 on one of the 2x2 pixels left after the crop
SR8[0, 0] = (0.0, 0.0, 0.0)  # inside the border: cropped away


def test_edsr_psnr_is_that_of_the_y_weighted_float_rgb_difference():
    # EDSR calc_psnr: diff/255, Y-diff = 65.738/256 of the red diff, mean over the 2x2 crop
    y_diff = 10 / 255 * 65.738 / 256
    expected = -10 * math.log10(y_diff ** 2 / 4)
    assert get_protocol("edsr").psnr_y(SR8, HR8, 1) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(45.960, abs=0.001)  # y_diff = 0.010070: mse 2.535e-5


def test_basicsr_psnr_uses_unrounded_y():
    # Y = 16 + (65.481 R + 128.553 G + 24.966 B)/255: red +10 moves it by 654.81/255
    expected = 10 * math.log10(255 ** 2 / ((654.81 / 255) ** 2 / 4))
    assert get_protocol("basicsr").psnr_y(SR8, HR8, 1) == pytest.approx(expected, abs=1e-12)


def test_matlab_psnr_rounds_y_to_8_bits():
    # grey 100: Y = 16 + 100 * 219/255 = 101.882 -> 102; red +10: 104.450 -> 104: one pixel 2 levels off
    assert get_protocol("matlab").psnr_y(SR8, HR8, 1) == pytest.approx(10 * math.log10(255 ** 2 / (4 / 4)), abs=1e-12)
    # red +1: Y 102.139 still rounds to 102: no difference at all for MATLAB, a small one for the others
    one = HR8.copy()
    one[1, 2, 0] += 1
    assert get_protocol("matlab").psnr_y(one, HR8, 1) == math.inf
    assert math.isfinite(get_protocol("basicsr").psnr_y(one, HR8, 1))
    # MATLAB rounds half away from zero (and saturates), unlike numpy's half to even
    assert matlab_uint8(np.array([2.5, 3.5, -0.5, 255.5])).tolist() == [3.0, 4.0, 0.0, 255.0]


def test_the_protocols_differ_and_sr_rounds_half_to_even_like_edsr():
    values = {name: p.psnr_y(SR8, HR8, 1) for name, p in PROTOCOLS.items()}
    assert len({round(v, 6) for v in values.values()}) == 3, values
    # EDSR's quantize uses torch.round: half to even
    assert quantize(np.array([0.5, 1.5, 2.5, 300.0]) / 255).tolist() == [0.0, 2.0, 2.0, 255.0]


def test_unknown_protocol_is_a_user_error():
    with pytest.raises(UserError, match="choose one of edsr, matlab, basicsr"):
        get_protocol("set5")


def test_imresize_uint8_rounds_after_the_vertical_pass_like_matlab():
    # x2 bicubic weights for a side of 2 (mirror boundary), worked out from the cubic kernel (a = -0.5):
    # out = [35 p0 - 3 p1, (51 p0 + 13 p1)/2, (13 p0 + 51 p1)/2, 35 p1 - 3 p0] / 32.
    # Vertical: column (0, 32) -> (-3, 6.5, 25.5, 35) -> uint8 (0, 7, 26, 35) (6.5 rounds up, -3 saturates);
    # then each row (a, b) the same way: row (0, 35) -> (-3.28, 7.11, 27.89, 38.28) -> (0, 7, 28, 38) ...
    image = np.array([[0.0, 32.0], [32.0, 0.0]])
    expected = np.array([[0, 7, 28, 38], [5, 11, 22, 28], [28, 22, 11, 5], [38, 28, 7, 0]], dtype=np.float64)
    np.testing.assert_array_equal(imresize_uint8(image, 2), expected)
    # rounding once at the end (the float pipeline) gives other bytes
    assert not np.array_equal(matlab_uint8(imresize(image, 2)), expected)
    # colour images: each channel alone
    rgb = np.stack([image, image[::-1], image * 0 + 7], axis=-1)
    out = imresize_uint8(rgb, 2)
    np.testing.assert_array_equal(out[..., 0], expected)
    np.testing.assert_array_equal(out[..., 1], imresize_uint8(image[::-1], 2))
    np.testing.assert_array_equal(out[..., 2], 7)


def test_degrade_gives_8_bit_lr_of_the_8_bit_hr():
    hr = np.random.default_rng(0).integers(0, 256, (16, 12, 3)) / 255.0
    lr = degrade(hr, 4)
    assert lr.shape == (4, 3, 3)
    np.testing.assert_array_equal(lr * 255, imresize_uint8(hr * 255, 0.25))
    np.testing.assert_array_equal(np.round(lr * 255), lr * 255)


def test_eval_prints_and_stores_its_protocol(tmp_path):
    out = tmp_path / "eval.json"
    done = subprocess.run([sys.executable, "-m", "edgesr", "eval", "--model", "ecbsr", "--data", "skimage",
                           "--protocol", "matlab", "--json", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "protocol matlab" in done.stdout
    report = json.loads(out.read_text())
    assert report["protocol"] == "matlab"
    default = subprocess.run([sys.executable, "-m", "edgesr", "eval", "--model", "ecbsr", "--data", "skimage",
                              "--json", "-"], capture_output=True, text=True)
    assert default.returncode == 0, default.stderr
    edsr = json.loads(default.stdout)
    assert edsr["protocol"] == "edsr"
    # the same SR images, scored by another formula: close, not equal
    assert edsr["mean"]["psnr_y"] != report["mean"]["psnr_y"]
    assert abs(edsr["mean"]["psnr_y"] - report["mean"]["psnr_y"]) < 0.2
