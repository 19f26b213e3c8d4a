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
from edgesr.family import IOSpec
from edgesr.model import Prepared
from edgesr.profile import count_params, deployable_macs_per_pixel, macs_per_lr_pixel, peak_activation_per_pixel
from edgesr.resources import check_fits

RUNTIMES = {"torch": ("fp32",), "torch-train": ("fp32",), "onnxruntime": ("fp32",),
            "tflite": ("fp32", "fp16", "int8"), "executorch": ("fp32", "int8")}
FILE_FORMAT = {"onnxruntime": "onnx", "tflite": "tflite", "executorch": "pte"}
RUNTIME_OF = {fmt: runtime for runtime, fmt in FILE_FORMAT.items()}  # an exported file's own runtime


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
    xnnpack: dict | None = None  # .tflite/.pte: partitions and ops outside XNNPACK (exporter.file_delegation)


INPUT_DATA = ("photo", "noise")  # photo: a bundled photo, mirrored to the size; noise: uniform random

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


@dataclass
class Target:
    """What a host bench times: an edgesr model (exported per case) or a given model file."""

    label: str
    family: str
    variant: str | None
    io: IOSpec
    runtimes: dict[str, tuple[str, ...]]  # runtime -> precisions it can run here
    costs: dict[str, tuple[int | None, float | None]]  # runtime -> (params, MACs per LR pixel)
    bytes_per_pixel: float  # working set of one inference per input pixel (for the memory check)
    make_file: Callable[[BenchCase, Path, Callable[[str], None]], Path]  # the file (or checkpoint) a case loads

    @property
    def scale(self) -> int:
        return self.io.scale


def model_target(prepared: Prepared) -> Target:
    """Bench an edgesr model: its training graph (torch-train), deploy form (torch) and each
    runtime's exported file, made and verified on the way."""
    from edgesr.export.exporter import export

    colors = prepared.config.colors
    deployable = prepared.deployable
    deploy = (sum(count_params(g.module) for g in deployable.graphs.values()), deployable_macs_per_pixel(deployable))
    costs = {r: deploy for r in RUNTIMES}
    runtimes = dict(RUNTIMES)
    if prepared.train is not None:
        costs["torch-train"] = (count_params(prepared.train), macs_per_lr_pixel(prepared.train, colors))
    else:
        runtimes.pop("torch-train")
    precisions = prepared.family.export_precisions
    runtimes = {r: tuple(p for p in ps if p in precisions) for r, ps in runtimes.items()}
    module = prepared.train if prepared.train is not None else next(iter(deployable.graphs.values())).module
    per_pixel = 4 * (3 * peak_activation_per_pixel(module, colors) + colors * (1 + prepared.config.scale ** 2))

    def make_file(case: BenchCase, workdir: Path, progress: Callable[[str], None]) -> Path:
        if case.runtime in ("torch", "torch-train"):
            path = workdir / "model.pt"
            if not path.exists():
                graph = "train" if prepared.train is not None else "deploy"
                save_checkpoint(path, prepared.train if prepared.train is not None else module, prepared.family.name,
                                prepared.config.to_dict(), graph)
            return path
        fmt = FILE_FORMAT[case.runtime]
        progress(f"exporting and verifying {fmt} {case.precision}")
        suffix = f".{fmt}" if deployable.single else ""
        return export(prepared, fmt, case.precision, workdir / f"model-{fmt}-{case.precision}{suffix}").path

    return Target(prepared.label, prepared.family.name, prepared.config.variant, prepared.io, runtimes, costs,
                  per_pixel, make_file)


def file_target(path: Path) -> Target:
    """Bench a given exported file or bundle on its own runtime (edgesr metadata needed: what it takes)."""
    from edgesr import metadata
    from edgesr.model_files import open_model

    model = open_model(path)
    if model.io is None:
        raise UserError(f"{path} carries no edgesr metadata, so its input is unknown: bench files written by "
                        "'edgesr export'")
    meta = model.metadata
    fmt = meta["runtime"] if model.family is not None else path.suffix[1:]
    runtime = RUNTIME_OF[fmt]
    files = ([path] if model.family is None else [path / entry["file"] for entry in meta["graphs"]])
    documents = [metadata.read(f) or {} for f in files]
    macs = sum(d.get("macs_per_pixel") or 0 for d in documents) or None
    io = model.io
    return Target(model.label, meta["family"], meta["variant"], io, {runtime: (meta["precision"],)},
                  {runtime: (None, macs)}, 4 * io.colors * (4 + 2 * io.scale ** 2),
                  lambda case, workdir, progress: path)


def check_options(runtimes: list[str], precisions: list[str], threads: list[int], warmup: int = 0,
                  runs: int = 1, rounds: int = 1) -> None:
    """Refuse unknown runtimes, unexported precisions and bad counts (before any model is built)."""
    if warmup < 0 or runs < 1 or rounds < 1:
        raise UserError("«warmup» must be >= 0, «runs» >= 1 and «rounds» >= 1")
    for runtime in runtimes:
        if runtime not in RUNTIMES:
            raise UserError(f"unknown runtime '{runtime}': choose from {', '.join(RUNTIMES)}")
        if not set(precisions) & set(RUNTIMES[runtime]):
            raise UserError(f"{runtime} runs {', '.join(RUNTIMES[runtime])} only, not "
                            f"{', '.join(precisions)}: add fp32 to «precision» or drop {runtime} from «runtime»")
    for precision in precisions:
        if precision not in ("fp32", "fp16", "int8"):
            raise UserError(f"unknown precision '{precision}': choose from fp32, fp16, int8")
        if not any(precision in RUNTIMES[r] for r in runtimes):
            raise UserError(f"precision {precision} is not exported for {', '.join(runtimes)}: "
                            "fp16 and int8 exist for the tflite «runtime» only")
    if any(t < 1 for t in threads):
        raise UserError("«threads» must be at least 1")


def plan_cases(target: Target, runtimes: list[str], precisions: list[str], shapes: list[str],
               threads: list[int]) -> list[BenchCase]:
    """Every valid combination; refuses bad options and absurd sizes before anything is allocated."""
    check_options(runtimes, precisions, threads)
    for runtime in runtimes:
        if runtime not in target.runtimes:
            raise UserError(f"{target.label} cannot run on {runtime} here: choose from {', '.join(target.runtimes)}")
    parsed = [parse_shape(s, target.io.colors) for s in shapes]
    for shape in parsed:
        n, _, h, w = shape
        check_fits(f"input {'x'.join(map(str, shape))}", int(n * h * w * target.bytes_per_pixel),
                   "use a smaller «input»")
    cases = [BenchCase(r, p, s, t) for s in parsed for t in threads for r in runtimes
             for p in precisions if p in target.runtimes[r]]
    if not cases:
        raise UserError(f"{target.label} runs none of {', '.join(precisions)} on {', '.join(runtimes)}")
    return cases


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


def run_cases(target: Target, cases: list[BenchCase], warmup: int, runs: int, rounds: int,
              progress: Callable[[str], None] = lambda _: None, input_data: str = "photo") -> list[CaseResult]:
    """Start one worker per case, warm each up, then time `runs` runs per case split over
    `rounds` rounds that visit the cases in rotating order (drift hits all cases alike). Inputs
    are photo content by default: kernels branch on data (PReLU on noise ran 1.7x slower in ORT)."""
    check_options([c.runtime for c in cases], [c.precision for c in cases], [c.threads for c in cases],
                  warmup, runs, rounds)
    rounds = min(rounds, runs)
    with tempfile.TemporaryDirectory(prefix="edgesr-bench-") as tmp:
        workdir = Path(tmp)
        files = {}
        for case in cases:
            if (case.runtime, case.precision) not in files:
                files[(case.runtime, case.precision)] = target.make_file(case, workdir, progress)
        delegation = {key: _delegation(path) for key, path in files.items()}  # None for non-XNNPACK files
        inputs = {}
        for shape in dict.fromkeys(c.shape for c in cases):
            inputs[shape] = workdir / f"input-{'x'.join(map(str, shape))}.npy"
            np.save(inputs[shape], bench_input(shape, target.io.pixel_range, input_data))
        workers: list[Worker] = []
        try:
            for i, case in enumerate(cases):
                progress(f"[{i + 1}/{len(cases)}] loading {case.label}")
                spec = {"runtime": case.runtime, "threads": case.threads, "model": target.family,
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
            return [CaseResult(w.case, timings[w.case], w.load, w.finish(),
                               delegation.get((w.case.runtime, w.case.precision))) for w in workers]
        finally:
            for worker in workers:
                worker.kill()


def bench_input(shape: tuple[int, int, int, int], pixel_range: float, kind: str = "photo") -> np.ndarray:
    """A bench input (NCHW float32): crops of a bundled photo (mirrored where larger), or noise."""
    from edgesr.images import PHOTOS, photo_crop

    if kind not in INPUT_DATA:
        raise UserError(f"unknown input data '{kind}': choose one of {', '.join(INPUT_DATA)}")
    rng = np.random.default_rng(0)
    n, colors, h, w = shape
    if kind == "noise":
        return (rng.random(shape) * pixel_range).astype(np.float32)
    return np.concatenate([photo_crop(PHOTOS[2 + i % 2], h, w, colors, pixel_range, rng) for i in range(n)])


def _delegation(path: Path) -> dict | None:
    """What XNNPACK takes of a .tflite or .pte file (a bundle: of each of its graphs, summed)."""
    from edgesr.export.exporter import file_delegation

    files = sorted(path.iterdir()) if path.is_dir() else [path]
    found = [d for d in map(file_delegation, files) if d is not None]
    if not found:
        return None
    outside: dict[str, int] = {}
    for d in found:
        for op, count in d.outside.items():
            outside[op] = outside.get(op, 0) + count
    return {"ops": sum(d.ops for d in found), "partitions": sum(d.partitions for d in found), "outside": outside}


def host_device(threads: list[int] = (1,)) -> dict:
    """The device block of a host report: CPU facts and its measured ceiling per thread count."""
    from edgesr.bench.ceiling import METHOD, ceiling
    from edgesr.bench.cpu import detect_cpu

    cpu = detect_cpu()
    return {"kind": "host", "name": cpu.model, "cpu": cpu.to_dict(),
            "ceiling": {"method": METHOD, "by_threads": {str(t): ceiling(t, cpu.model) for t in threads}}}


def case_record(target: Target, result: CaseResult, device: dict) -> dict:
    """One report case: statistics, memory, and achieved GOP/s against this CPU's measured ceiling."""
    from edgesr.bench.ceiling import ceiling_for

    case = result.case
    stats = summarize(result.latencies_ms)
    params, macs_per_pixel = target.costs[case.runtime]
    n, _, h, w = case.shape
    macs = macs_per_pixel * n * h * w if macs_per_pixel else None
    gops = 2 * macs / (stats.median_ms * 1e6) if macs else None
    measured = device.get("ceiling", {}).get("by_threads", {}).get(str(case.threads))
    top = ceiling_for(case.precision, measured) if measured else None
    return {"device": "host", "model": target.family, "variant": target.variant, "scale": target.scale,
            "runtime": case.runtime, "precision": case.precision, "input": list(case.shape),
            "threads": case.threads, "latency": stats.to_dict(), "first_ms": result.load["first_ms"],
            "init_ms": result.load["init_ms"], "peak_rss_mb": result.peak_rss_mb,
            "rss_before_load_mb": result.load["rss_before_load_mb"],
            "threads_applied": result.load["threads_applied"],
            "os_threads_added": result.load["os_threads_added"], "params": params, "macs": macs,
            "gflops": gops, "ceiling_gops": top, "ceiling_fraction": gops / top if gops and top else None,
            "xnnpack": result.xnnpack}


def run_bench(target: Target, cases: list[BenchCase], warmup: int, runs: int, rounds: int, device: dict,
              progress: Callable[[str], None] = lambda _: None, input_data: str = "photo") -> list[dict]:
    """Run and summarize one model's planned cases: the report's 'cases' entries."""
    progress(f"{len(cases)} case(s) of {target.label}: {warmup} warm-up + {runs} timed runs each, "
             f"over {rounds} interleaved round(s), one process per case, {input_data} input")
    results = run_cases(target, cases, warmup, runs, rounds, progress, input_data)
    return [case_record(target, r, device) for r in results]


def bench(target: Target, runtimes: list[str], precisions: list[str], inputs: list[str], threads: list[int],
          warmup: int, runs: int, rounds: int, weights: str, progress: Callable[[str], None] = lambda _: None,
          input_data: str = "photo") -> dict:
    """Check, plan, run: the host bench report (its schema: edgesr/bench/report.py)."""
    from edgesr.bench import report as reports

    check_options(runtimes, precisions, threads, warmup, runs, rounds)
    if input_data not in INPUT_DATA:
        raise UserError(f"unknown input data '{input_data}': choose one of {', '.join(INPUT_DATA)}")
    cases = plan_cases(target, runtimes, precisions, inputs, threads)
    progress("measuring this CPU's compute ceiling (cached after the first run)")
    device = host_device(sorted(set(threads)))
    report = reports.new_report(device, {"warmup": warmup, "runs": runs, "rounds": rounds, "weights": weights,
                                         "input_data": input_data})
    report["cases"] = run_bench(target, cases, warmup, runs, rounds, device, progress, input_data)
    return report
