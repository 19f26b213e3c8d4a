"""Host-CPU benchmark: every case in its own worker process, timed in interleaved rounds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr.bench.stats import summarize
from edgesr.checkpoints import save_checkpoint
from edgesr.errors import ToolError, UserError
from edgesr.pipeline import PreparedModel
from edgesr.profile import count_params, macs_per_lr_pixel, peak_activation_per_pixel
from edgesr.resources import check_fits

RUNTIMES = {"torch": ("fp32",), "torch-train": ("fp32",), "onnxruntime": ("fp32",),
            "tflite": ("fp32", "fp16", "int8")}
FILE_FORMAT = {"onnxruntime": "onnx", "tflite": "tflite"}


@dataclass(frozen=True)
class BenchCase:
    """One (runtime, precision, input shape, threads) combination."""

    runtime: str
    precision: str
    shape: tuple[int, int, int, int]
    threads: int

    @property
    def label(self) -> str:
        return f"{self.runtime} {self.precision} {'x'.join(map(str, self.shape))} t{self.threads}"


@dataclass
class CaseResult:
    """Measurements of one case."""

    case: BenchCase
    latencies_ms: list[float]
    load: dict
    peak_rss_mb: float


def parse_shape(text: str, colors: int) -> tuple[int, int, int, int]:
    """'360x640' or '1x1x360x640' -> (N, C, H, W), checked against the model's colours."""
    try:
        dims = [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise UserError(f"input size '{text}' is not HxW or NxCxHxW (e.g. 360x640)") from None
    if len(dims) == 2:
        dims = [1, colors, *dims]
    if len(dims) != 4:
        raise UserError(f"input size '{text}' is not HxW or NxCxHxW (e.g. 360x640)")
    if min(dims) < 1:
        raise UserError(f"input size '{text}' has a zero or negative dimension")
    if dims[1] != colors:
        raise UserError(f"input '{text}' has {dims[1]} channels but the model takes {colors} "
                        f"({'Y' if colors == 1 else 'RGB'}): pass HxW, or a variant with that many colours")
    return dims[0], dims[1], dims[2], dims[3]


def estimated_bytes(prepared: PreparedModel, shape: tuple[int, int, int, int]) -> int:
    """Rough peak working set of one inference: input, output and the widest activations
    (x3 for producer, consumer and runtime workspace), in float32."""
    n, c, h, w = shape
    module = prepared.train if prepared.train is not None else prepared.deploy
    per_pixel = 3 * peak_activation_per_pixel(module, c) + c * (1 + prepared.config.scale ** 2)
    return int(4 * n * h * w * per_pixel)


def check_options(runtimes: list[str], precisions: list[str], threads: list[int], warmup: int = 0,
                  runs: int = 1, rounds: int = 1) -> None:
    """Refuse unknown runtimes, unexported precisions and bad counts (before any model is built)."""
    if warmup < 0 or runs < 1 or rounds < 1:
        raise UserError("--warmup must be >= 0, --runs >= 1 and --rounds >= 1")
    for runtime in runtimes:
        if runtime not in RUNTIMES:
            raise UserError(f"unknown runtime '{runtime}': choose from {', '.join(RUNTIMES)}")
        if not set(precisions) & set(RUNTIMES[runtime]):
            raise UserError(f"{runtime} runs {', '.join(RUNTIMES[runtime])} only, not "
                            f"{', '.join(precisions)}: add --precision fp32 or drop --runtime {runtime}")
    for precision in precisions:
        if precision not in ("fp32", "fp16", "int8"):
            raise UserError(f"unknown precision '{precision}': choose from fp32, fp16, int8")
        if not any(precision in RUNTIMES[r] for r in runtimes):
            raise UserError(f"precision {precision} is not exported for {', '.join(runtimes)}: "
                            "fp16 and int8 exist for --runtime tflite only")
    if any(t < 1 for t in threads):
        raise UserError("--threads must be at least 1")


def plan_cases(prepared: PreparedModel, runtimes: list[str], precisions: list[str], shapes: list[str],
               threads: list[int]) -> list[BenchCase]:
    """Every valid combination; refuses bad options and absurd sizes before anything is allocated."""
    check_options(runtimes, precisions, threads)
    if "torch-train" in runtimes and prepared.train is None:
        raise UserError("torch-train needs the training graph, but the checkpoint is a deploy checkpoint")
    parsed = [parse_shape(s, prepared.config.colors) for s in shapes]
    for shape in parsed:
        check_fits(f"input {'x'.join(map(str, shape))}", estimated_bytes(prepared, shape), "use a smaller --input")
    return [BenchCase(r, p, s, t) for s in parsed for t in threads for r in runtimes
            for p in precisions if p in RUNTIMES[r]]


class Worker:
    """A benchmark worker process for one case."""

    def __init__(self, case: BenchCase, spec: dict, log_path: Path):
        env = {**os.environ, "OMP_NUM_THREADS": str(case.threads), "MKL_NUM_THREADS": str(case.threads),
               "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.case = case
        self.log_path = log_path
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen([sys.executable, "-m", "edgesr.bench.worker"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        self.load = self._ask(spec)

    def _ask(self, message: dict) -> dict:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            self.log.flush()
            tail = self.log_path.read_text().strip().splitlines()[-1:] or ["no output"]
            raise ToolError(f"benchmark worker for {self.case.label} died: {tail[0]}")
        answer = json.loads(line)
        if "error" in answer:
            raise ToolError(f"benchmark worker for {self.case.label} failed: {answer['error']}")
        return answer

    def run(self, n: int) -> list[float]:
        return self._ask({"op": "run", "n": n})["latencies_ms"]

    def finish(self) -> float:
        peak = self._ask({"op": "finish"})["peak_rss_mb"]
        self.process.wait(timeout=30)
        self.log.close()
        return peak

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


def prepare_files(prepared: PreparedModel, cases: list[BenchCase], workdir: Path,
                  progress: Callable[[str], None]) -> dict[tuple[str, str], Path]:
    """The verified model file (or checkpoint) every case loads, made once each."""
    from edgesr.export.pipeline import export_verified

    files: dict[tuple[str, str], Path] = {}
    for case in cases:
        key = (case.runtime, case.precision)
        if key in files:
            continue
        if case.runtime in ("torch", "torch-train"):
            path = workdir / "model.pt"
            if not path.exists():
                module = prepared.train if prepared.train is not None else prepared.deploy
                graph = "train" if prepared.train is not None else "deploy"
                save_checkpoint(path, module, prepared.spec.name, prepared.config.to_dict(), graph)
        else:
            fmt = FILE_FORMAT[case.runtime]
            path = workdir / f"model-{case.precision}.{fmt}"
            progress(f"exporting and verifying {fmt} {case.precision}")
            export_verified(prepared, fmt, case.precision, path)
        files[key] = path
    return files


def run_cases(prepared: PreparedModel, cases: list[BenchCase], warmup: int, runs: int, rounds: int,
              progress: Callable[[str], None] = lambda _: None) -> list[CaseResult]:
    """Start one worker per case, warm each up, then time `runs` runs per case split over
    `rounds` rounds that visit the cases in rotating order (drift hits all cases alike)."""
    check_options([c.runtime for c in cases], [c.precision for c in cases], [c.threads for c in cases],
                  warmup, runs, rounds)
    rounds = min(rounds, runs)
    with tempfile.TemporaryDirectory(prefix="edgesr-bench-") as tmp:
        workdir = Path(tmp)
        files = prepare_files(prepared, cases, workdir, progress)
        inputs = {}
        rng = np.random.default_rng(0)
        for shape in dict.fromkeys(c.shape for c in cases):
            inputs[shape] = workdir / f"input-{'x'.join(map(str, shape))}.npy"
            np.save(inputs[shape], (rng.random(shape) * prepared.config.pixel_range).astype(np.float32))
        workers: list[Worker] = []
        try:
            for i, case in enumerate(cases):
                progress(f"[{i + 1}/{len(cases)}] loading {case.label}")
                spec = {"runtime": case.runtime, "threads": case.threads, "model": prepared.spec.name,
                        "path": str(files[(case.runtime, case.precision)]), "input": str(inputs[case.shape])}
                workers.append(Worker(case, spec, workdir / f"worker-{i}.log"))
                if warmup:
                    workers[-1].run(warmup)
            timings: dict[BenchCase, list[float]] = {c: [] for c in cases}
            per_round = [runs // rounds + (1 if r < runs % rounds else 0) for r in range(rounds)]
            for r, n in enumerate(per_round):
                order = workers[r % len(workers):] + workers[:r % len(workers)]
                for worker in order:
                    timings[worker.case] += worker.run(n)
                    done = timings[worker.case]
                    progress(f"round {r + 1}/{rounds} {worker.case.label}: median so far "
                             f"{summarize(done).median_ms:.2f} ms ({len(done)}/{runs} runs)")
            return [CaseResult(w.case, timings[w.case], w.load, w.finish()) for w in workers]
        finally:
            for worker in workers:
                worker.kill()


def case_costs(prepared: PreparedModel) -> dict[str, tuple[int, float]]:
    """(params, MACs per LR pixel) of the graph each runtime executes."""
    colors = prepared.config.colors
    deploy = (count_params(prepared.deploy), macs_per_lr_pixel(prepared.deploy, colors))
    costs = {r: deploy for r in RUNTIMES}
    if prepared.train is not None:
        costs["torch-train"] = (count_params(prepared.train), macs_per_lr_pixel(prepared.train, colors))
    return costs


def host_device() -> dict:
    """The device block of a host report: CPU facts and the peak assumptions."""
    from edgesr.bench.cpu import detect_cpu

    cpu = detect_cpu()
    return {"kind": "host", "name": cpu.model, "cpu": cpu.to_dict(),
            "peak_assumption": cpu.peak_formula(1).split(" = ")[0] + " per thread"}


def case_record(prepared: PreparedModel, result: CaseResult, costs: dict[str, tuple[int, float]]) -> dict:
    """One report case: statistics, memory, and achieved GFLOP/s against this CPU's peak."""
    from edgesr.bench.cpu import detect_cpu

    case, cfg = result.case, prepared.config
    stats = summarize(result.latencies_ms)
    params, macs_per_pixel = costs[case.runtime]
    n, _, h, w = case.shape
    macs = macs_per_pixel * n * h * w
    gflops = 2 * macs / (stats.median_ms * 1e6)
    peak = detect_cpu().peak_gflops(case.threads)
    return {"device": "host", "model": prepared.spec.name, "variant": cfg.variant, "scale": cfg.scale,
            "runtime": case.runtime, "precision": case.precision, "input": list(case.shape),
            "threads": case.threads, "latency": stats.to_dict(), "first_ms": result.load["first_ms"],
            "init_ms": result.load["init_ms"], "peak_rss_mb": result.peak_rss_mb,
            "rss_before_load_mb": result.load["rss_before_load_mb"],
            "threads_applied": result.load["threads_applied"],
            "os_threads_added": result.load["os_threads_added"], "params": params, "macs": macs,
            "gflops": gflops, "peak_gflops": peak, "peak_fraction": gflops / peak}


def run_bench(prepared: PreparedModel, cases: list[BenchCase], warmup: int, runs: int, rounds: int,
              progress: Callable[[str], None] = lambda _: None) -> list[dict]:
    """Run and summarize one model's planned cases: the report's 'cases' entries."""
    progress(f"{len(cases)} case(s) of {prepared.label}: {warmup} warm-up + {runs} timed runs each, "
             f"over {rounds} interleaved round(s), one process per case")
    results = run_cases(prepared, cases, warmup, runs, rounds, progress)
    costs = case_costs(prepared)
    return [case_record(prepared, r, costs) for r in results]
