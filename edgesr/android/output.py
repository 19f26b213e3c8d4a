"""Parse the output of TFLite's benchmark_model (current and older formats) and of ExecuTorch's
executor_runner."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgesr.errors import ToolError

_NUMBER = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_STAT = re.compile(rf"count=(\d+)(?: first=({_NUMBER}))? curr=({_NUMBER})(\(all same\))?"
                   rf"(?: min=({_NUMBER}) max=({_NUMBER}) avg=({_NUMBER}) std=({_NUMBER}))?")
_TIMINGS = re.compile(rf"Inference timings in (us|ms): Init: ({_NUMBER}), First inference: ({_NUMBER}), "
                      rf"Warmup \(avg\): ({_NUMBER}), Inference \(avg\): ({_NUMBER})")
_OLD_TIMINGS = re.compile(rf"Average inference timings in (us|ms): Warmup: ({_NUMBER}), Init: ({_NUMBER}), "
                          rf"(?:no stats: |Inference: )({_NUMBER})")
_MEMORY_DELTA = re.compile(rf"Memory footprint delta from the start of the tool \(MB\): init=({_NUMBER}) "
                           rf"overall=({_NUMBER})")
_PEAK_MEMORY = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUMBER})")
_UNCONSUMED = re.compile(r"Unconsumed cmdline flags:(.*)")


@dataclass(frozen=True)
class RunStats:
    """One `count=... avg=...` line, in microseconds (min/max/avg equal curr when all same)."""

    count: int
    first_us: float
    min_us: float
    max_us: float
    avg_us: float
    std_us: float


@dataclass(frozen=True)
class BenchmarkOutput:
    """What one benchmark_model run reported (times in microseconds, memory in MB)."""

    init_us: float
    first_us: float | None
    warmup_avg_us: float | None
    inference_avg_us: float
    steady: RunStats | None
    warmup: RunStats | None
    memory_init_mb: float | None
    memory_overall_mb: float | None
    peak_memory_mb: float | None
    standin: bool = False  # printed by edgesr's stand-in (LiteRT on a host), not TFLite's benchmark_model
    runs_us: tuple[float, ...] | None = None  # each timed run, where the tool prints them (executor_runner)


STANDIN_BANNER = "edgesr stand-in benchmark_model"


def last_line(text: str) -> str:
    """The last non-empty line a tool printed (what a failure message quotes)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _stat(match: re.Match) -> RunStats:
    count, first, curr, _, lo, hi, avg, std = match.groups()
    curr_f = float(curr)
    if lo is None:  # "count=N curr=X(all same)" or a single run
        return RunStats(int(count), float(first or curr), curr_f, curr_f, curr_f, 0.0)
    return RunStats(int(count), float(first), float(lo), float(hi), float(avg), float(std))


def parse_benchmark_output(text: str) -> BenchmarkOutput:
    """Parse stdout+stderr of benchmark_model; unknown flags and missing timings are errors."""
    unconsumed = _UNCONSUMED.search(text)
    if unconsumed:
        raise ToolError(f"benchmark_model did not accept the flags{unconsumed.group(1).rstrip()}: "
                        "this binary is too old or too new for edgesr's flags")
    stats = [_stat(m) for m in _STAT.finditer(text)]
    warmup, steady = (stats[0], stats[1]) if len(stats) >= 2 else (None, stats[0] if stats else None)
    memory = _MEMORY_DELTA.search(text)
    peak = _PEAK_MEMORY.search(text)
    mem = (float(memory.group(1)), float(memory.group(2))) if memory else (None, None)
    peak_mb = float(peak.group(1)) if peak else None
    timings = _TIMINGS.search(text)
    if timings:
        unit = 1000.0 if timings.group(1) == "ms" else 1.0
        init, first, warm, avg = (float(timings.group(i)) * unit for i in range(2, 6))
        return BenchmarkOutput(init, first, warm, avg, steady, warmup, *mem, peak_mb, STANDIN_BANNER in text)
    old = _OLD_TIMINGS.search(text)
    if old:
        unit = 1000.0 if old.group(1) == "ms" else 1.0
        warm, init, avg = (float(old.group(i)) * unit for i in range(2, 5))
        return BenchmarkOutput(init, None, warm, avg, steady, warmup, *mem, peak_mb, STANDIN_BANNER in text)
    last = text.strip().splitlines()[-1:] or ["no output"]
    raise ToolError(f"benchmark_model printed no inference timings (last line: {last[0][:160]})")


_ET_LOADED = re.compile(rf"Model loaded in ({_NUMBER}) ms")
_ET_ITERATION = re.compile(rf"Iteration (\d+) of (\d+): ({_NUMBER}) ms")
_ET_DONE = re.compile(rf"Model executed successfully (\d+) time\(s\) in ({_NUMBER}) ms")
_ET_UNKNOWN_FLAG = re.compile(r"(?:ERROR|FATAL).*unknown command line flag '([^']+)'")
EXECUTOR_STANDIN_BANNER = "edgesr stand-in executor_runner"


def parse_executor_runner_output(text: str, warmup: int) -> BenchmarkOutput:
    """Parse stdout+stderr of ExecuTorch's executor_runner run for `warmup` + timed executions:
    its "Iteration i of N: X ms" lines (the first `warmup` are warm-up) and "Model loaded in X ms"."""
    unknown = _ET_UNKNOWN_FLAG.search(text)
    if unknown:
        raise ToolError(f"executor_runner does not know the flag --{unknown.group(1)}: build a runner that has it "
                        "(see android_bench/README.md)")
    done, loaded = _ET_DONE.search(text), _ET_LOADED.search(text)
    runs = [float(m.group(3)) * 1000.0 for m in _ET_ITERATION.finditer(text)]
    if done is None or loaded is None or len(runs) != int(done.group(1)) or len(runs) <= warmup:
        last = text.strip().splitlines()[-1:] or ["no output"]
        raise ToolError(f"executor_runner printed no per-iteration timings (last line: {last[0][:160]})")
    warm, timed = runs[:warmup], runs[warmup:]
    mean = sum(timed) / len(timed)
    std = (sum((t - mean) ** 2 for t in timed) / len(timed)) ** 0.5
    steady = RunStats(len(timed), timed[0], min(timed), max(timed), mean, std)
    warm_stats = RunStats(len(warm), warm[0], min(warm), max(warm), sum(warm) / len(warm), 0.0) if warm else None
    return BenchmarkOutput(float(loaded.group(1)) * 1000.0, runs[0], warm_stats.avg_us if warm_stats else None, mean,
                           steady, warm_stats, None, None, None, EXECUTOR_STANDIN_BANNER in text, tuple(timed))


_HOTTEST = re.compile(r"edgesr: hottest thermal zone (before|after) run: (-?\d+) milli-C")


def hottest_zones(text: str) -> dict[str, float | None]:
    """The hottest thermal zone (C) run_benchmark.sh saw before and after the run (None if unreadable)."""
    found = {m.group(1): int(m.group(2)) / 1000 for m in _HOTTEST.finditer(text)}
    return {when: found.get(when) or None for when in ("before", "after")}


def pooled(outputs: list[BenchmarkOutput]) -> BenchmarkOutput:
    """Several runs of the same case as one: timed runs pooled (mean of the means, pooled standard
    deviation, extreme min and max), the first run's first inference, the median init, peak memory."""
    import statistics

    if len(outputs) == 1:
        return outputs[0]
    steady = [o.steady for o in outputs if o.steady]
    mean = sum(o.inference_avg_us for o in outputs) / len(outputs)
    stats = None
    if len(steady) == len(outputs):
        count = sum(s.count for s in steady)
        var = sum(s.count * (s.std_us ** 2 + (s.avg_us - mean) ** 2) for s in steady) / count
        stats = RunStats(count, steady[0].first_us, min(s.min_us for s in steady), max(s.max_us for s in steady),
                         mean, var ** 0.5)
    runs = tuple(r for o in outputs for r in o.runs_us) if all(o.runs_us for o in outputs) else None
    peaks = [o.peak_memory_mb for o in outputs if o.peak_memory_mb is not None]
    overall = [o.memory_overall_mb for o in outputs if o.memory_overall_mb is not None]
    first = outputs[0]
    return BenchmarkOutput(statistics.median(o.init_us for o in outputs), first.first_us, first.warmup_avg_us, mean,
                           stats, first.warmup, first.memory_init_mb, max(overall) if overall else None,
                           max(peaks) if peaks else None, any(o.standin for o in outputs), runs)


_FULL = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be completely executed")
_PARTIAL = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be partially executed by the "
                      r"delegate w/ (\d+) delegate kernels")
_NONE = re.compile(r"Though (\S+) delegate is explicitly applied, the model graph will not be executed")


@dataclass(frozen=True)
class Delegated:
    """How much of a graph benchmark_model's delegate took (its "Explicitly applied" line)."""

    delegate: str
    kernels: int  # delegate kernels (partitions); 0: none
    complete: bool

    def format(self) -> str:
        if self.complete:
            return f"all ({self.delegate})"
        if self.kernels:
            return f"partial ({self.delegate}, {self.kernels} kernels)"
        return f"none ({self.delegate})"


def parse_delegation(text: str) -> Delegated | None:
    """What benchmark_model said about its delegate; None when it applied none (plain CPU kernels)."""
    full, partial, none = _FULL.search(text), _PARTIAL.search(text), _NONE.search(text)
    if full:
        return Delegated(full.group(1), 1, True)
    if partial:
        return Delegated(partial.group(1), int(partial.group(2)), False)
    if none:
        return Delegated(none.group(1), 0, False)
    return None
