"""Numerical checks: run several graphs on the same inputs and check every pair against
the rounding-error model (edgesr/error_model.py).

For a pair (reference R, candidate C) on one input, the model gives each graph's exact result
R*, C* (float64, at the graph's storage precision) and the sigma of a correct implementation's
rounding error around it. The candidate passes when, at every bounded output element,

    deviation = |(C - R) - (C* - R*)|  <=  LAMBDA * sqrt(sigma_R^2 + sigma_C^2).

For fp32 files C* = R* up to the fold's weight rounding; for fp16 files C* - R* is the exact
effect of fp16 weights; for int8, C* carries the file's clamping ranges and sigma its rounding.
The table also shows C vs R as a user sees it (max-abs, PSNR).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgesr.error_model import FP32_U, LAMBDA, Modelled
from edgesr.metrics import ErrorStats, compare

if TYPE_CHECKING:
    from edgesr.runners import Graph

DEFAULT_SIZES = [(48, 48), (37, 53), (64, 41)]
MAX_EXEMPT = 0.5  # above this share of output elements behind near-tie decisions, nothing is proven


@dataclass(frozen=True)
class Subject:
    """A graph to run and the error model of what it computes."""

    open: Callable[[], Graph]
    model: Callable[[np.ndarray], Modelled]


@dataclass
class Run:
    """One graph's outputs and error models over the inputs, in input order."""

    outputs: list[np.ndarray]
    models: list[Modelled]


@dataclass(frozen=True)
class Pair:
    """Which two graphs to compare, at the candidate's precision."""

    reference: str
    candidate: str
    precision: str


@dataclass(frozen=True)
class Check:
    """One pair compared over all inputs (worst case reported)."""

    reference: str
    candidate: str
    precision: str
    stats: ErrorStats  # candidate vs reference, as a user sees it
    deviation: float  # |(C - R) - (C* - R*)| where it uses most of its bound
    bound: float  # the bound there
    used: float  # worst deviation / bound: at most 1 passes
    exempt: float  # share of output elements behind near-tie decisions (not bounded)
    inputs: int

    @property
    def proven(self) -> bool:
        return self.exempt <= MAX_EXEMPT

    @property
    def passed(self) -> bool:
        return self.proven and self.used <= 1.0

    @property
    def result(self) -> str:
        if not self.proven:
            return "UNPROVEN"
        return "PASS" if self.passed else "FAIL"

    def problem(self) -> str:
        """One line saying why a check did not pass."""
        if not self.proven:
            return (f"{self.candidate}: {100 * self.exempt:.0f}% of its output depends on decisions (masks, "
                    f"routing) within {self.precision} noise of a tie, so the error model cannot bound it")
        return (f"{self.candidate} differs from {self.reference} by {self.deviation:.3g} more than its "
                f"{self.precision} error model allows (bound {self.bound:.3g}, {100 * self.used:.0f}% of it)")

    def to_dict(self) -> dict:
        return {"reference": self.reference, "candidate": self.candidate, "precision": self.precision,
                "inputs": self.inputs, "max_abs": self.stats.max_abs, "mean_abs": self.stats.mean_abs,
                "psnr_db": None if math.isinf(self.stats.psnr_db) else self.stats.psnr_db,
                "deviation": self.deviation, "bound": self.bound, "used": self.used, "exempt": self.exempt,
                "lambda": LAMBDA, "result": self.result, "passed": self.passed}


@dataclass(frozen=True)
class Deviation:
    """How one candidate output deviates from what the error model predicts, at the element
    where the deviation uses most of its bound."""

    deviation: float
    bound: float
    used: float
    exempt: float


def deviation(reference: np.ndarray, ref_model: Modelled, candidate: np.ndarray, cand_model: Modelled) -> Deviation:
    """The model check of one candidate output against one reference output (see module doc)."""
    if reference.shape != candidate.shape or ref_model.value.shape != reference.shape:
        raise ValueError(f"output shapes differ: {reference.shape} vs {candidate.shape}")
    gap = np.abs((candidate.astype(np.float64) - reference) - (cand_model.value - ref_model.value))
    # each output is itself stored in fp32: its last rounding is part of the tolerance
    bound = (LAMBDA * np.hypot(ref_model.sigma, cand_model.sigma) + ref_model.allowance + cand_model.allowance
             + FP32_U * (np.abs(reference) + np.abs(candidate)))
    bounded = ~(ref_model.exempt | cand_model.exempt)
    exempt = 1.0 - float(bounded.mean())
    if not bounded.any():
        return Deviation(0.0, 0.0, 0.0, exempt)
    ratio = np.where(bounded, gap / np.maximum(bound, np.finfo(np.float64).tiny), 0.0)
    worst = np.unravel_index(np.argmax(ratio), ratio.shape)
    return Deviation(float(gap[worst]), float(bound[worst]), float(ratio[worst]), exempt)


def check_pair(pair: Pair, reference: Run, candidate: Run, pixel_range: float) -> Check:
    """A pair over every input: worst statistics, worst deviation against the model."""
    stats, worst = None, None
    for r, rm, c, cm in zip(reference.outputs, reference.models, candidate.outputs, candidate.models, strict=True):
        s = compare(r, c, pixel_range)
        stats = s if stats is None else stats.worst(s)
        d = deviation(r, rm, c, cm)
        if worst is None or (d.exempt, d.used) > (worst.exempt, worst.used):
            worst = d
    return Check(pair.reference, pair.candidate, pair.precision, stats, worst.deviation, worst.bound, worst.used,
                 worst.exempt, len(reference.outputs))


def collect(subjects: dict[str, Subject], inputs: list[tuple[str, np.ndarray]],
            progress: Callable[[str], None] = lambda _: None) -> dict[str, Run]:
    """Open each graph lazily, run it on every input and evaluate its error model."""
    runs = {}
    for name, subject in subjects.items():
        progress(f"running {name} on {len(inputs)} inputs")
        graph = subject.open()
        runs[name] = Run([graph(x) for _, x in inputs], [subject.model(x) for _, x in inputs])
    return runs


def check_pairs(runs: dict[str, Run], pairs: list[Pair], pixel_range: float) -> list[Check]:
    return [check_pair(p, runs[p.reference], runs[p.candidate], pixel_range) for p in pairs]


def _fmt_psnr(db: float) -> str:
    return "inf" if math.isinf(db) else f"{db:.1f}"


def format_table(checks: list[Check]) -> str:
    """The verification table: one row per compared pair."""
    wide = max([12] + [len(c.candidate) for c in checks])
    header = (f"{'reference':<10} {'candidate':<{wide}} {'prec':<5} {'inputs':>6} {'max-abs':>9} {'mean-abs':>9} "
              f"{'PSNR dB':>8} {'deviation':>10} {'bound':>9} {'used':>6}  result")
    lines = [header, "-" * len(header)]
    for c in checks:
        exempt = f" ({100 * c.exempt:.1f}% exempt)" if c.exempt else ""
        lines.append(f"{c.reference:<10} {c.candidate:<{wide}} {c.precision:<5} {c.inputs:>6} {c.stats.max_abs:>9.3g} "
                     f"{c.stats.mean_abs:>9.3g} {_fmt_psnr(c.stats.psnr_db):>8} {c.deviation:>10.3g} "
                     f"{c.bound:>9.3g} {100 * c.used:>5.0f}%  {c.result}{exempt}")
    return "\n".join(lines)


def explain_bounds() -> str:
    """The line `verify` prints under its table."""
    return (f"deviation = |(candidate - reference) - what the candidate's precision predicts|; "
            f"bound = {LAMBDA:g} sigma of the rounding-error model at that output element (edgesr/error_model.py): "
            "fp32 arithmetic over the magnitudes summed along the path; fp16 files add their fp16 weights "
            "exactly; int8 files their clamping ranges exactly and their rounding as noise")


def cached(model: Callable[[np.ndarray], Modelled]) -> Callable[[np.ndarray], Modelled]:
    """A model evaluated once per input array (the reference's serves every pair it is in)."""
    results: dict[int, tuple[np.ndarray, Modelled]] = {}

    def run(x: np.ndarray) -> Modelled:
        hit = results.get(id(x))
        if hit is None or hit[0] is not x:
            hit = results[id(x)] = (x, model(x))
        return hit[1]

    return run


def _on_even_windows(stored, graph, x: np.ndarray):
    """`stored` (Modelled, effect) of a graph that takes even sides only (edgesr/nn/blocked.py), on
    any image: modelled on the even windows its runtimes use, stitched (tiling.even_pieces)."""
    from edgesr.tiling import assemble, even_pieces

    pieces = even_pieces(x.shape[2], x.shape[3], graph.radius)
    if len(pieces) == 1:
        return stored(x)
    runs = [stored(np.ascontiguousarray(p.window(x))) for p in pieces]
    scale, (h, w) = graph.scale, x.shape[2:]

    def joined(parts):
        if all(np.ndim(p) == 0 for p in parts):
            return max(parts)
        return assemble(pieces, [np.broadcast_to(p, runs[0][0].value.shape) for p in parts], scale, h, w)

    own = [m for m, _ in runs]
    return Modelled(joined([m.value for m in own]), joined([m.sigma for m in own]),
                    joined([m.exempt for m in own]), sum(m.unstable_decisions for m in own),
                    joined([m.allowance for m in own])), joined([e for _, e in runs])


def graph_model(module, call=None) -> Callable[[np.ndarray], Modelled]:
    """The error model of a reference graph: its exact value and its own fp32 rounding."""
    from edgesr.error_model import PRECISIONS, at_precision, modelled

    prepared = at_precision(module, PRECISIONS["fp32"])
    return cached(lambda x: modelled(module, x, call=call, prepared=prepared))


def expectation(reference: Callable[[np.ndarray], Modelled], graph, precision: str = "fp32", file=None,
                colors: int = 1, pixel_range: float = 1.0, call=None) -> Callable[[np.ndarray], Modelled]:
    """What a correct candidate computes: the reference's exact value, plus the exact effect of the
    candidate's storage precision on `graph` (the deploy form it was converted from: fp16 weights,
    int8 clamping), with the rounding noise of `graph` at that precision (its fp32 weights count
    as rounded: a fold computes them in float64). A wrong `graph` shows: its precision effect is
    a difference of two runs of itself, its math is never trusted. int8 ranges come from the
    exported `file` (matched on a calibration crop, see error_model.match_ranges)."""
    from edgesr.error_model import PRECISIONS, at_precision, match_ranges, modelled, op_outputs

    numerics = PRECISIONS[precision]
    ranges = None
    if numerics.activations == "int8":
        from edgesr.runners import open_runtime_file

        runner = open_runtime_file(file)
        if hasattr(runner, "recorded_int8_ranges"):  # .pte: ranges recorded at export (see export.pte)
            ranges = runner.recorded_int8_ranges()
        else:  # .tflite: the file's int8 tensors on a photo crop, read back
            from edgesr.images import calibration_crops

            crop = calibration_crops(colors, pixel_range, count=1, size=runner.fixed_side or 64)[0]
            stored, input_range = runner.stored_int8_tensors(crop)
            ranges = match_ranges(op_outputs(graph, crop, call), stored, input_range)
    at = at_precision(graph, numerics)
    base = at_precision(graph, PRECISIONS["fp32"]) if precision != "fp32" else None

    def stored(x: np.ndarray) -> tuple[Modelled, np.ndarray | float]:
        own = modelled(graph, x, numerics, ranges, call=call, prepared=at, stored=True)
        effect = own.value - modelled(graph, x, call=call, prepared=base).value if base is not None else 0.0
        return own, effect

    def model(x: np.ndarray) -> Modelled:
        ref = reference(x)
        own, effect = _on_even_windows(stored, graph, x) if getattr(graph, "size_multiple", 1) > 1 else stored(x)
        return Modelled(ref.value + effect, own.sigma, own.exempt, own.unstable_decisions, own.allowance)

    return cached(model)


def check_output(reference, x: np.ndarray, output: np.ndarray, candidate=None, precision: str = "fp32") -> Deviation:
    """Is `output` what a correct `precision` implementation of the reference's math computes on
    x, converted from `candidate` (default: the reference itself)? Compared with the fp32
    PyTorch `reference` on x; `used` at most 1 means yes (a runtime's output, a re-parameterized
    graph's, a device's)."""
    import torch

    x = np.ascontiguousarray(x, dtype=np.float32)
    with torch.no_grad():
        expected = reference.eval()(torch.from_numpy(x)).numpy()
    output = output.detach().numpy() if isinstance(output, torch.Tensor) else np.asarray(output)
    ref_model = graph_model(reference)
    cand_model = expectation(ref_model, candidate if candidate is not None else reference, precision)
    return deviation(expected, ref_model(x), output, cand_model(x))
