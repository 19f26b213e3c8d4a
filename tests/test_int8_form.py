"""The int8 form stored for ECBSR (edgesr/nn/blocked.py): convs on 2x2 pixel blocks and each PReLU a
ReLU pair. Its math equals the deploy graph's within the fp32 bound (even and odd sides), a
quantum off fails, and the default int8 export runs every op in XNNPACK in one partition."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from edgesr import metadata
from edgesr.android.command import workload
from edgesr.check import check_output
from edgesr.error_model import LAMBDA, PRECISIONS, at_precision, modelled
from edgesr.errors import UserError
from edgesr.export import exporter
from edgesr.images import verification_inputs
from edgesr.model import prepare
from edgesr.model_files import open_model
from edgesr.nn.blocked import BlockedChain
from edgesr.runners import TfliteGraph
from edgesr.tiling import even_windows

SIZES = [(20, 26), (17, 29)]  # even, odd


def _blocked(prepared) -> BlockedChain:
    return prepared.family.int8_form("deploy", prepared.deployable.graphs["deploy"], prepared.config).module


def _run(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def shipped():
    return prepare("ecbsr")


@pytest.mark.parametrize("variant, scale", [("M4C16", 4), ("M2C8-RGB", 3)])
def test_the_blocked_form_is_the_deploy_graph_within_the_fp32_bound(variant, scale):
    """On the shipped x4 weights and on random RGB x3 weights, at even and odd sizes (odd sides
    run as two even windows), with slopes of both signs."""
    prepared = prepare("ecbsr") if variant == "M4C16" else prepare("ecbsr", variant, scale)
    if variant != "M4C16":
        with torch.no_grad():  # random weights: give the slopes both signs
            for block in prepared.deploy.backbone:
                if block.act is not None:
                    block.act.weight.uniform_(-0.3, 0.3)
    blocked = _blocked(prepared)
    slopes = torch.cat([b.act.weight.detach() for b in prepared.deploy.backbone if b.act is not None])
    assert (slopes < 0).any() and (slopes > 0).any()
    for _, x in verification_inputs(SIZES, prepared.config.colors, prepared.config.pixel_range, seed=3):
        out = _run(blocked, x)
        assert out.shape == _run(prepared.deploy, x).shape
        result = check_output(prepared.deploy, x, out, blocked)
        assert result.used <= 1.0, result


def _quantum(deploy, blocked: BlockedChain, x: np.ndarray, conv, index: tuple) -> float:
    """The smallest change of one blocked weight that moves some output by its fp32 bound."""
    fp32 = PRECISIONS["fp32"]
    exact = at_precision(blocked, fp32)
    probe = at_precision(blocked, fp32)
    name = next(n for n, m in blocked.named_modules() if m is conv)
    with torch.no_grad():
        dict(probe.named_modules())[name].weight[index] += 1e-3
    gain = np.abs(_run(probe, x.astype(np.float64)) - _run(exact, x.astype(np.float64))) / 1e-3
    bound = LAMBDA * np.hypot(modelled(deploy, x).sigma, modelled(blocked, x, stored=True).sigma)
    return float(np.min(bound / np.maximum(gain, 1e-300)))


def test_a_quantum_off_in_the_blocked_form_fails_a_quarter_passes(shipped):
    blocked = _blocked(shipped)
    _, x = verification_inputs([(24, 24)], 1, 255.0, seed=4)[1]  # a photo crop
    conv = blocked.layers[1].conv
    w = conv.weight.detach().abs()
    index = tuple(int(i) for i in torch.nonzero(w == w.max())[0])
    quantum = _quantum(shipped.deploy, blocked, x, conv, index)
    original = conv.weight.detach().clone()
    for steps, passes in ((0.25, True), (1.5, False)):
        with torch.no_grad():
            conv.weight.copy_(original)
            conv.weight[index] += steps * quantum
        assert (check_output(shipped.deploy, x, _run(blocked, x), blocked).used <= 1.0) == passes, steps


@pytest.mark.parametrize("broken", ["slope-sign", "pair-swapped", "sub-pixel-swapped"])
def test_a_wrong_rewrite_fails_by_orders_of_magnitude(shipped, broken):
    blocked = _blocked(shipped)
    layer = blocked.layers[0]
    with torch.no_grad():
        if broken == "slope-sign":  # recombine with relu(z) + sign(a) relu(-|a| z)
            half = layer.combine.weight.shape[1] // 2
            layer.combine.weight[:, half:] *= -1
        elif broken == "pair-swapped":
            half = layer.conv.weight.shape[0] // 2
            order = list(range(half, 2 * half)) + list(range(half))
            layer.conv.weight.copy_(layer.conv.weight[order])
            layer.conv.bias.copy_(layer.conv.bias[order])
        else:  # sub-pixels (0, 0) and (0, 1) exchanged in the entry conv
            c = blocked.entry.conv.weight.shape[0] // 8
            order = list(range(2 * c, 4 * c)) + list(range(2 * c)) + list(range(4 * c, 8 * c))
            blocked.entry.conv.weight.copy_(blocked.entry.conv.weight[order])
            blocked.entry.conv.bias.copy_(blocked.entry.conv.bias[order])
    _, x = verification_inputs([(24, 24)], 1, 255.0, seed=4)[1]
    assert check_output(shipped.deploy, x, _run(blocked, x), blocked).used > 100


def test_odd_sides_run_as_two_even_windows_and_tiny_odd_sides_are_refused():
    assert even_windows(8, 6) == [(0, 8, 0, 8)]
    (a0, a1, k0, k1), (b0, b1, m0, m1) = even_windows(31, 6)
    assert (a1 - a0) % 2 == 0 and (b1 - b0) % 2 == 0 and (k0, m1) == (0, 31) and k1 == m0
    assert a1 - k1 > 6 and m0 - b0 > 6  # each cut edge lies beyond the receptive radius of what is kept
    with pytest.raises(UserError, match="odd side needs at least 15 pixels"):
        even_windows(13, 6)


def test_default_int8_export_is_blocked_and_all_in_xnnpack_native_keeps_prelu(shipped, tmp_path):
    report = exporter.export(shipped, "tflite", "int8", tmp_path / "fast.tflite")
    graph = report.files[0]
    assert graph.form == "blocked" and graph.delegation.complete and graph.delegation.partitions == 1
    assert set(graph.ops) == {"CONV_2D", "ADD", "DEPTH_TO_SPACE"}
    assert "all 14 ops in XNNPACK (1 partition)" in report.format()
    meta = metadata.read(report.path)
    assert meta["int8_form"] == "blocked" and meta["size_multiple"] == 2
    assert report.parity.passed and exporter.parity(shipped, report.path, "int8").passed
    # an odd-sized image through the file: two even windows, equal to running them by hand
    x = verification_inputs([(27, 30)], 1, 255.0, seed=6)[1][1]
    graph_file = TfliteGraph(report.path, 1)
    whole = graph_file(x)
    top = graph_file(np.ascontiguousarray(x[:, :, :26]))
    assert whole.shape == (1, 1, 108, 120) and np.array_equal(whole[:, :, :13 * 4], top[:, :, :13 * 4])
    with pytest.raises(UserError, match="even sizes"):
        graph_file.bind(x)
    # a phone bench times what LiteRT would run: the two even windows of an odd image
    assert workload(open_model(report.path), (1, 1, 27, 30)) == {"deploy": Counter({(1, 1, 26, 30): 2})}

    native = exporter.export(shipped, "tflite", "int8", tmp_path / "native.tflite", int8_form="native")
    delegation = native.files[0].delegation
    assert native.files[0].form == "native" and delegation.outside == {"PRELU": 5} and delegation.partitions > 1
    assert native.parity.passed


def test_calibration_tails_give_numpys_percentiles_without_keeping_every_value():
    from edgesr.nn.blocked import CLIP_PERCENTILE, Tails

    rng = np.random.default_rng(0)
    chunks = [rng.standard_t(3, size=n) for n in (200_000, 50_000, 120_000)]
    tails = Tails(len(chunks), 200_000)
    for chunk in chunks:
        tails.add(chunk, chunk.size)
    every = np.concatenate(chunks)
    for percent in (CLIP_PERCENTILE, 100 - CLIP_PERCENTILE):
        assert tails.percentile(percent) == pytest.approx(np.percentile(every, percent), rel=1e-12)
    assert sum(t.size for t in tails.high) < 0.001 * every.size  # what is kept: the tails only
