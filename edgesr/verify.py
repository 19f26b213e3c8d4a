"""Numerical verification: run several graphs on the same inputs and bound their differences."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgesr.metrics import ErrorStats, compare

if TYPE_CHECKING:
    from edgesr.runtimes import Graph

# Max-abs error bounds as a fraction of the model's pixel range (x255 for 0..255 models).
# fp32: re-association of sums only. fp16: float16 weights round by up to 2^-11 relative, and
# the error compounds with depth and width, so no per-weight bound holds for every network; the
# bound is half an 8-bit output level (0.5/255 of the range: the 8-bit image moves by at most
# one level). Measured on the shipped checkpoints: ECBSR-M4C16 x2 5.9e-4, ClassSR-FSRCNN net3
# 1.03e-3 of the range; a wrong kernel, permutation or residual costs whole levels.
# int8: a few quantization steps of the 8-bit output tensor, on real photos (the calibration
# distribution); uniform noise drives activations outside the calibrated ranges, so int8 on
# noise is reported but not bounded.
BOUNDS = {"fp32": 1e-5, "fp16": 0.5 / 255, "int8": 2e-2}
SUBSETS = ("all", "photos", "random")
DEFAULT_SIZES = [(48, 48), (37, 53), (64, 41)]


@dataclass(frozen=True)
class Check:
    """One pair of graphs compared over all inputs (worst case reported)."""

    reference: str
    candidate: str
    precision: str
    subset: str
    stats: ErrorStats
    bound: float | None
    inputs: int

    @property
    def passed(self) -> bool:
        """Within bound; informational rows (bound None) never fail."""
        return self.bound is None or self.stats.max_abs <= self.bound

    def to_dict(self) -> dict:
        return {"reference": self.reference, "candidate": self.candidate, "precision": self.precision,
                "inputs": f"{self.inputs} {self.subset}", "max_abs": self.stats.max_abs,
                "mean_abs": self.stats.mean_abs,
                "psnr_db": None if math.isinf(self.stats.psnr_db) else self.stats.psnr_db,
                "bound": self.bound, "passed": self.passed}


@dataclass(frozen=True)
class Pair:
    """Which two graphs to compare, at which precision, on which inputs."""

    reference: str
    candidate: str
    precision: str
    subset: str = "all"


def pairs_for(reference: str, candidate: str, precision: str) -> list[Pair]:
    """int8 is bounded on photos and reported on noise; other precisions use every input."""
    if precision == "int8":
        return [Pair(reference, candidate, precision, "photos"), Pair(reference, candidate, precision, "random")]
    return [Pair(reference, candidate, precision)]


def bound_for(pair: Pair, pixel_range: float) -> float | None:
    """The max-abs bound for a pair, in the model's own pixel units (None: report only)."""
    if pair.precision == "int8" and pair.subset == "random":
        return None
    return BOUNDS[pair.precision] * pixel_range


def _in_subset(label: str, subset: str) -> bool:
    return subset == "all" or (label.startswith("random") == (subset == "random"))


def run_all(graph: Graph, inputs: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
    """Outputs of one graph for every input."""
    return [graph(x) for _, x in inputs]


def worst_error(reference: list[np.ndarray], candidate: list[np.ndarray], pixel_range: float) -> ErrorStats:
    """Worst max-abs / mean-abs / PSNR over paired outputs."""
    stats = [compare(r, c, pixel_range) for r, c in zip(reference, candidate, strict=True)]
    worst = stats[0]
    for s in stats[1:]:
        worst = worst.worst(s)
    return worst


def check_pairs(outputs: dict[str, list[np.ndarray]], labels: list[str], pairs: list[Pair],
                pixel_range: float) -> list[Check]:
    """Compare pairs of already-computed outputs (labels name the inputs, in order)."""
    checks = []
    for pair in pairs:
        keep = [i for i, label in enumerate(labels) if _in_subset(label, pair.subset)]
        stats = worst_error([outputs[pair.reference][i] for i in keep],
                            [outputs[pair.candidate][i] for i in keep], pixel_range)
        checks.append(Check(pair.reference, pair.candidate, pair.precision, pair.subset, stats,
                            bound_for(pair, pixel_range), len(keep)))
    return checks


def collect_outputs(graphs: dict[str, Callable[[], Graph]], inputs: list[tuple[str, np.ndarray]],
                    progress: Callable[[str], None] = lambda _: None) -> dict[str, list[np.ndarray]]:
    """Open each graph lazily and run it on every input."""
    outputs = {}
    for name, open_graph in graphs.items():
        progress(f"running {name} on {len(inputs)} inputs")
        outputs[name] = run_all(open_graph(), inputs)
    return outputs


def _fmt_psnr(db: float) -> str:
    return "inf" if math.isinf(db) else f"{db:.1f}"


def format_table(checks: list[Check]) -> str:
    """The verification table: one row per compared pair."""
    header = f"{'reference':<10} {'candidate':<12} {'prec':<5} {'inputs':<10} {'max-abs':>9} " \
             f"{'mean-abs':>9} {'PSNR dB':>8} {'bound':>9}  result"
    lines = [header, "-" * len(header)]
    for c in checks:
        bound, result = ("-", "info") if c.bound is None else (f"{c.bound:.3g}", "PASS" if c.passed else "FAIL")
        lines.append(f"{c.reference:<10} {c.candidate:<12} {c.precision:<5} {f'{c.inputs} {c.subset}':<10} "
                     f"{c.stats.max_abs:>9.3g} {c.stats.mean_abs:>9.3g} {_fmt_psnr(c.stats.psnr_db):>8} "
                     f"{bound:>9}  {result}")
    return "\n".join(lines)
