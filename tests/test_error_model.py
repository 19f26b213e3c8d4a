"""The rounding-error model behind every parity bound, tested in both directions: a correct
implementation that sums in another order passes on any CPU; a weight moved by one quantum of
the bound, a wrong tap or a swapped channel fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from edgesr.check import check_output
from edgesr.error_model import LAMBDA, UnsupportedOp, at_precision, modelled
from edgesr.export import exporter
from edgesr.images import verification_inputs
from edgesr.model import Prepared, prepare

SIZES = [(24, 24), (17, 29)]
FAMILIES = {"ecbsr": "M4C16", "splitsr": "A0.25-G2B2-H1-C16-BIC", "smsr": "C16-K2"}
# a 3x3 conv in the middle of each deploy graph, off the decision paths (SMSR's mask branch is
# piecewise constant in its weights)
MIDDLE = {"ecbsr": "backbone.2.conv3x3", "splitsr": "body.0.body.1.body.0", "smsr": "body.0.layers.1.from_dense"}


class ReorderedSums(TorchFunctionMode):
    """Every multi-channel conv summed in another order: the second half of the input channels
    first, then the first half, then the bias (still a correct fp32 implementation)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.conv2d, F.conv2d):
            x, w = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            groups = args[6] if len(args) > 6 else kwargs.get("groups", 1)
            rest = {k: v for k, v in kwargs.items() if k != "bias"}
            if groups == 1 and w.shape[1] > 1:
                half = w.shape[1] // 2
                y = func(x[:, half:], w[:, half:], None, *args[3:], **rest)
                y = y + func(x[:, :half], w[:, :half], None, *args[3:], **rest)
                return y + bias.view(1, -1, 1, 1) if bias is not None else y
        return func(*args, **kwargs)


def _prepared(name: str):
    """ECBSR with its shipped x4 weights; SMSR and SplitSR with seeded weights (at x2, where no
    checkpoint ships), the MIDDLE convs above chosen for those."""
    return prepare(name, FAMILIES[name], 2) if name != "ecbsr" else prepare("ecbsr")


def _inputs(prepared):
    cfg = prepared.config
    return verification_inputs(SIZES, cfg.colors, cfg.pixel_range, seed=5)


def _run(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_reordered_sum_passes(name):
    """Another summation order changes the output (by fp32 rounding) and stays inside the bound."""
    prepared = _prepared(name)
    changed = False
    for _, x in _inputs(prepared):
        with ReorderedSums():
            out = _run(prepared.deploy, x)
        changed |= bool(np.any(out != _run(prepared.deploy, x)))
        result = check_output(prepared.train, x, out, prepared.deploy)
        assert result.used <= 1.0, result
        assert result.exempt == 0.0
    assert changed, "the reordering must change some output bits, or the test proves nothing"


def _quantum(prepared, x: np.ndarray, layer: nn.Conv2d, index: tuple, precision: str = "fp32") -> float:
    """One quantum of the bound for one weight: the smallest change of that weight that moves
    some output element by its bound (linear sensitivity measured in float64)."""
    exact = at_precision(prepared.deploy, pipeline_precision(precision))
    probe = at_precision(prepared.deploy, pipeline_precision(precision))
    target = dict(prepared.deploy.named_modules())
    name = next(n for n, m in target.items() if m is layer)
    step = 1e-3
    with torch.no_grad():
        dict(probe.named_modules())[name].weight[index] += step
        gain = np.abs(_run(probe, x.astype(np.float64)) - _run(exact, x.astype(np.float64))) / step
    bound = _bound(prepared, x, precision)
    return float(np.min(bound / np.maximum(gain, 1e-300)))


def pipeline_precision(name: str):
    from edgesr.error_model import PRECISIONS

    return PRECISIONS[name]


def _bound(prepared, x: np.ndarray, precision: str) -> np.ndarray:
    ref = modelled(prepared.train, x)
    own = modelled(prepared.deploy, x, precision, stored=True)
    return LAMBDA * np.hypot(ref.sigma, own.sigma)


def _middle_conv(prepared) -> nn.Conv2d:
    return dict(prepared.deploy.named_modules())[MIDDLE[prepared.family.name]]


def _largest_weight(layer: nn.Conv2d) -> tuple[int, ...]:
    w = layer.weight.detach().abs()
    return tuple(int(i) for i in torch.nonzero(w == w.max())[0])


@contextmanager
def moved_weight(prepared, x: np.ndarray, steps: float) -> Iterator[None]:
    """The deploy graph's middle conv with its largest weight moved by `steps` quanta of the
    bound on x, restored afterwards."""
    layer = _middle_conv(prepared)
    index = _largest_weight(layer)
    quantum = _quantum(prepared, x, layer, index)
    original = layer.weight.detach().clone()
    try:
        with torch.no_grad():
            layer.weight[index] += steps * quantum
        yield
    finally:
        with torch.no_grad():
            layer.weight.copy_(original)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_one_quantum_of_weight_error_fails(name):
    """Moving one weight by 1.5 quanta of the bound fails, by a quarter of one passes."""
    prepared = _prepared(name)
    _, x = _inputs(prepared)[1]  # a photo crop
    for steps, passes in ((0.25, True), (1.5, False)):
        with moved_weight(prepared, x, steps):
            result = check_output(prepared.train, x, _run(prepared.deploy, x), prepared.deploy)
        assert (result.used <= 1.0) == passes, (steps, result)


def test_the_quantum_of_a_trained_weight_is_tiny():
    """On the shipped (trained) ECBSR a weight error of 0.02% of the weight is already caught."""
    prepared = _prepared("ecbsr")
    _, x = _inputs(prepared)[1]
    layer = _middle_conv(prepared)
    index = _largest_weight(layer)
    assert _quantum(prepared, x, layer, index) < 1e-3 * float(layer.weight.detach()[index].abs())


def test_fp16_weights_are_predicted_exactly_and_a_quantum_off_fails():
    """What an fp16 file computes (fp16 weights, fp32 sums) passes the fp16 model in any sum order;
    the same with one weight 1.5 quanta off fails."""
    prepared = _prepared("ecbsr")
    _, x = _inputs(prepared)[1]
    half = at_precision(prepared.deploy, pipeline_precision("fp16")).float()
    with ReorderedSums():
        out = _run(half, x)
    assert check_output(prepared.train, x, out, prepared.deploy, "fp16").used <= 1.0
    assert np.abs(out - _run(prepared.train, x)).max() > 1e-3  # fp16 weights do move the output
    layer = _middle_conv(prepared)
    index = _largest_weight(layer)
    quantum = _quantum(prepared, x, layer, index, "fp16")
    with torch.no_grad():
        dict(half.named_modules())[MIDDLE["ecbsr"]].weight[index] += 1.5 * quantum
    assert check_output(prepared.train, x, _run(half, x), prepared.deploy, "fp16").used > 1.0


def test_fp16_compute_bounds_a_half_precision_run_and_a_quantum_off_fails():
    """A phone GPU's default numerics (fp16 weights, tensors and arithmetic), here the deploy graph
    run in torch.float16: far outside the fp32 and fp16-weights models, within the fp16-compute
    one; the same run with one weight 1.5 quanta (of the fp16-compute bound) off fails it."""
    prepared = _prepared("ecbsr")
    _, x = _inputs(prepared)[1]

    def half_run(module) -> np.ndarray:
        with torch.no_grad():
            return module.half()(torch.from_numpy(x).half()).float().numpy()

    half = at_precision(prepared.deploy, pipeline_precision("fp32")).float()
    out = half_run(half)
    assert check_output(prepared.train, x, out, prepared.deploy, "fp16-compute").used <= 1.0
    assert check_output(prepared.train, x, out, prepared.deploy, "fp32").used > 10
    assert check_output(prepared.train, x, out, prepared.deploy, "fp16").used > 10
    layer = _middle_conv(prepared)
    index = _largest_weight(layer)
    quantum = _quantum(prepared, x, layer, index, "fp16-compute")
    with torch.no_grad():
        dict(half.named_modules())[MIDDLE["ecbsr"]].weight[index] += 1.5 * quantum
    assert check_output(prepared.train, x, half_run(half), prepared.deploy, "fp16-compute").used > 1.0


@pytest.mark.parametrize("broken", ["wrong-tap", "swapped-channels", "dropped-residual"])
def test_real_math_errors_fail_by_orders_of_magnitude(broken):
    prepared = _prepared("ecbsr")
    deploy = prepared.deploy
    layer = _middle_conv(prepared)
    original = layer.weight.detach().clone()
    _, x = _inputs(prepared)[1]
    try:
        with torch.no_grad():
            if broken == "wrong-tap":
                layer.weight.copy_(torch.roll(original, 1, dims=3))
            elif broken == "swapped-channels":
                layer.weight.copy_(original[[1, 0, *range(2, original.shape[0])]])
            out = _run(deploy, x)
            if broken == "dropped-residual":
                out = out - np.repeat(np.repeat(x, 4, axis=2), 4, axis=3)
        assert check_output(prepared.train, x, out, deploy).used > 100
    finally:
        with torch.no_grad():
            layer.weight.copy_(original)


@pytest.mark.parametrize("fmt", ["tflite", "pte"])
def test_int8_file_within_its_model_and_a_perturbed_file_fails(tmp_path, fmt):
    """The int8 file passes its own model (the file's ranges, rounding as noise) on photos AND
    on noise; an int8 file converted from weights moved by 1.5 quanta of the int8 bound fails."""
    prepared = _prepared("ecbsr")
    path = tmp_path / f"ok.{fmt}"
    exporter.write_graph(prepared, "deploy", fmt, "int8", path)
    check = exporter.parity(prepared, path, "int8")
    assert check.passed and check.stats.max_abs > 50  # noise saturates int8 ranges, the model knows it
    _, x = _inputs(prepared)[1]
    layer = _middle_conv(prepared)
    own = modelled(prepared.deploy, x, "fp32")  # sensitivity in float64
    probe = at_precision(prepared.deploy, pipeline_precision("fp32"))
    name = next(n for n, m in prepared.deploy.named_modules() if m is layer)
    with torch.no_grad():
        dict(probe.named_modules())[name].weight[0, 0, 1, 1] += 1e-3
    gain = np.abs(_run(probe, x.astype(np.float64)) - own.value) / 1e-3
    quantum = float(np.min(check.bound / np.maximum(gain, 1e-300)))
    original = layer.weight.detach().clone()
    try:
        with torch.no_grad():
            layer.weight[0, 0, 1, 1] += 1.5 * quantum
        bad = tmp_path / f"bad.{fmt}"
        exporter.write_graph(prepared, "deploy", fmt, "int8", bad)
    finally:
        with torch.no_grad():
            layer.weight.copy_(original)
    assert not exporter.parity(prepared, bad, "int8").passed


def test_bounds_scale_with_the_outputs_smsr_at_the_official_checkpoints_range(tmp_path):
    """The authors' SMSR x2 checkpoint outputs -200..450 on 0..255: scaled to that range, a correct
    fp32 export still passes (the bound grows with the magnitudes) and a quantum off fails."""
    base = _prepared("smsr")
    with torch.no_grad():
        for conv in (base.train.tail[0], base.train.collect[2]):
            conv.weight.mul_(40.0)
    prepared = Prepared.of(base.train, "smsr", "scaled")
    _, x = _inputs(prepared)[1]
    out = _run(prepared.train, x)
    assert out.min() < -150 and out.max() > 400, (out.min(), out.max())
    path = tmp_path / "m.tflite"
    exporter.write_graph(prepared, "deploy", "tflite", "fp32", path)
    assert exporter.parity(prepared, path, "fp32").passed


class _Gate(nn.Module):
    """y = x[:, 1] where x[:, 0] > 0: a hard decision like SMSR's spatial mask."""

    def forward(self, x):
        return (x[:, :1] > 0).to(x.dtype) * x[:, 1:]


def _tie_graph() -> nn.Module:
    """conv channel 0 = x0 - x1 (zero, up to rounding, where they are equal); channel 1 = 1."""
    conv = nn.Conv2d(2, 2, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1], conv.weight[0, 1, 1, 1] = 1.0, -1.0
        conv.bias.copy_(torch.tensor([0.0, 1.0]))
    return nn.Sequential(conv, _Gate(), nn.Conv2d(1, 1, 3, padding=1))


def test_a_near_tie_decision_may_go_either_way_and_nothing_more():
    """One decision within the model's noise of a tie: a correct CPU may take either side, so the
    output with it flipped passes; anything more does not."""
    x = np.zeros((1, 2, 6, 6), dtype=np.float32)
    x[0, 0] = 0.9  # every decision clear (x0 - x1 = 0.9 > 0) ...
    x[0, :, 2, 3] = 0.3  # ... but this one: 0.3 - 0.3, a tie up to rounding
    graph = _tie_graph().eval()
    assert modelled(_Gate(), x).unstable_decisions == 0  # on the exact input itself a tie falls the same everywhere
    result = modelled(graph, x)
    assert result.unstable_decisions == 1 and not result.exempt.any()
    assert np.count_nonzero(result.allowance) == 9  # the flip reaches the 3x3 neighbourhood of the last conv
    flipped = x.copy()
    flipped[0, 0, 2, 3] += 1e-6  # as if this CPU rounded the margin to the other side
    output = _run(graph, flipped)
    assert np.abs(output - _run(graph, x)).max() > 0.01  # the flip matters ...
    assert check_output(graph, x, output).used <= 1.0  # ... and is allowed
    output[0, 0, 0, 0] += 0.01  # a change away from the tie is not
    assert check_output(graph, x, output).used > 1.0


def test_beyond_max_flips_near_ties_are_exempt_and_counted():
    x = np.full((1, 2, 6, 6), 0.3, dtype=np.float32)  # 36 ties: too many to flip one by one
    result = modelled(_tie_graph().eval(), x)
    assert result.unstable_decisions == 36 and result.exempt.all()


def test_an_op_without_a_rule_is_refused():
    class Odd(nn.Module):
        def forward(self, x):
            return torch.exp(x)

    with pytest.raises(UnsupportedOp, match="exp"):
        modelled(Odd(), np.zeros((1, 1, 2, 2), dtype=np.float32))
