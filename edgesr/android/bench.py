"""`edgesr bench --device adb`: push the exported files and the benchmark binary (TFLite's
benchmark_model for .tflite, ExecuTorch's executor_runner for .pte), run pinned, parse, report."""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgesr.android.adb import Adb
from edgesr.android.facts import core_mask, device_facts, read_thermal
from edgesr.android.output import (
    BenchmarkOutput,
    hottest_zones,
    last_line,
    parse_benchmark_output,
    parse_delegation,
    parse_executor_runner_output,
    pooled,
)
from edgesr.errors import ToolError, UserError

DELEGATES = {"cpu": ("--use_xnnpack=false",), "xnnpack": ("--use_xnnpack=true",),
             "gpu": ("--use_gpu=true",), "nnapi": ("--use_nnapi=true",)}
DEVICE_DIR = "/data/local/tmp/edgesr"
RUNNER = Path(__file__).with_name("run_benchmark.sh")
THERMAL_DIR = "/sys/class/thermal"


@dataclass(frozen=True)
class DeviceTool:
    """A benchmark binary the phone runs: the files it takes, the delegates it offers, its flags
    for one case and the parser of what it prints."""

    runtime: str
    binary: str  # the official tool's name
    fmt: str  # the export format it runs
    delegates: tuple[str, ...]
    flags: Callable[[DeviceSettings, str, str | None, DeviceCase], list[str]]
    parse: Callable[[str, DeviceSettings], BenchmarkOutput]


@dataclass(frozen=True)
class DeviceCase:
    """One on-device run of the benchmark binary."""

    precision: str
    delegate: str
    threads: int
    shape: tuple[int, int, int, int]  # N, C, H, W
    graph: str = "deploy"  # which graph of a bundle
    runtime: str = "tflite"  # TOOLS key

    @property
    def key(self) -> tuple[str, str]:
        return self.precision, self.graph

    @property
    def label(self) -> str:
        graph = "" if self.graph == "deploy" else f" {self.graph}"
        return (f"{self.runtime} {self.precision}{graph} {self.delegate} {'x'.join(map(str, self.shape))} "
                f"t{self.threads}")


@dataclass(frozen=True)
class DeviceSettings:
    """How to run on the device."""

    binary: Path
    cores: str = "big"
    cooldown_s: int = 5
    max_temp_c: float | None = None
    warmup: int = 5
    runs: int = 30
    keep: bool = False
    extra_args: tuple[str, ...] = ()
    device_dir: str = DEVICE_DIR
    timeout_s: float = 900
    cv_target: float = 0.03  # repeat a case until the run-to-run coefficient of variation is at most this
    max_repeats: int = 5  # ... or it ran this often


@dataclass(frozen=True)
class DeviceResult:
    """A case and what the benchmark binary reported for it over its repeats (pooled)."""

    case: DeviceCase
    output: BenchmarkOutput
    cores_mask: str
    repeat_means_us: tuple[float, ...] = ()
    thermal_before_c: float | None = None  # hottest zone before the first repeat
    thermal_after_c: float | None = None  # and after the last
    delegation: str | None = None  # what the delegate took, as the tool reported it

    @property
    def cv(self) -> float | None:
        """Run-to-run coefficient of variation of the repeats' means (population std / mean)."""
        return coefficient_of_variation(self.repeat_means_us)

    def stable(self, target: float) -> bool | None:
        return None if self.cv is None else self.cv <= target


def coefficient_of_variation(values: tuple[float, ...] | list[float]) -> float | None:
    """std / mean of at least two values (None for fewer)."""
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5 / mean


def check_binary(path: Path | None, binary: str = "benchmark_model") -> Path:
    """The benchmark binary the user supplies (it cannot be downloaded here)."""
    if path is None:
        raise UserError(f"missing benchmark binary: pass «benchmark_binary», the path to {binary} built for the "
                        "phone's ABI (see android_bench/README.md)")
    if not Path(path).is_file():
        raise UserError(f"benchmark binary {path} not found: pass the path of {binary} as «benchmark_binary» "
                        "(see android_bench/README.md)")
    return Path(path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def activation_bytes_per_pixel(path: Path) -> int:
    """Bytes a .tflite file keeps live per input pixel, read from its tensor shapes without
    allocating anything: three of its widest activations (channels x element size)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    widest = max((int(t["shape_signature"][-1]) * np.dtype(t["dtype"]).itemsize
                  for t in Interpreter(model_path=str(path)).get_tensor_details()
                  if len(t["shape_signature"]) == 4 and -1 in t["shape_signature"][1:3]), default=4)
    return 3 * widest


def memory_need(path: Path, shape: tuple[int, int, int, int]) -> int:
    """Bytes one run of `path` keeps live at input `shape` (a .pte: what it plans for its largest
    declared input, which its runner allocates whatever the input)."""
    from edgesr.export.pte import planned_memory

    n, _, h, w = shape
    return planned_memory(path) if path.suffix == ".pte" else n * h * w * activation_bytes_per_pixel(path)


def check_device_memory(facts: dict, files: dict[tuple[str, str], Path], cases: list[DeviceCase]) -> None:
    """Refuse input sizes the phone's available memory cannot hold, before anything is pushed."""
    from edgesr.resources import SHARE, gib

    available = facts.get("memory_available_bytes")
    if not available:
        return
    for case in cases:
        need = memory_need(files[case.key], case.shape)
        if need > SHARE * available:
            raise UserError(f"input {'x'.join(map(str, case.shape))} needs about {gib(need)} on {facts['name']} but "
                            f"{gib(SHARE * available)} of its memory is available: use a smaller «input»")


def input_tensor_name(path: Path) -> str:
    """Name of the model's input tensor, for --input_layer."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path)).get_input_details()[0]["name"]


def _benchmark_model_flags(settings: DeviceSettings, model_remote: str, input_name: str | None,
                          case: DeviceCase) -> list[str]:
    n, c, h, w = case.shape
    return [f"--graph={model_remote}", f"--num_threads={case.threads}", f"--warmup_runs={settings.warmup}",
            f"--num_runs={settings.runs}", *DELEGATES[case.delegate], f"--input_layer={input_name}",
            f"--input_layer_shape={n},{h},{w},{c}", "--report_peak_memory_footprint=true", *settings.extra_args]


def _executor_runner_flags(settings: DeviceSettings, model_remote: str, input_name: str | None,
                           case: DeviceCase) -> list[str]:
    """executor_runner has no warm-up flag: it runs warm-up + timed executions and prints each
    (parse_executor_runner_output drops the warm-up); without input files it feeds ones at the
    shape --input_shapes gives."""
    n, c, h, w = case.shape
    return [f"--model_path={model_remote}", f"--num_executions={settings.warmup + settings.runs}",
            f"--cpu_threads={case.threads}", f"--input_shapes={n}x{c}x{h}x{w}", "--print_output=none",
            *settings.extra_args]


TOOLS = {"tflite": DeviceTool("tflite", "benchmark_model", "tflite", tuple(DELEGATES), _benchmark_model_flags,
                              lambda text, _: parse_benchmark_output(text)),
         # a .pte carries its XNNPACK delegate: the runner has no delegate to choose
         "executorch": DeviceTool("executorch", "executor_runner", "pte", ("xnnpack",), _executor_runner_flags,
                                  lambda text, settings: parse_executor_runner_output(text, settings.warmup))}


def benchmark_command(settings: DeviceSettings, binary_remote: str, model_remote: str, input_name: str | None,
                      case: DeviceCase, mask: str) -> str:
    """The device shell command line for one case."""
    max_temp_mc = int(settings.max_temp_c * 1000) if settings.max_temp_c else 0
    flags = TOOLS[case.runtime].flags(settings, model_remote, input_name, case)
    words = ["sh", f"{settings.device_dir}/run_benchmark.sh", str(settings.cooldown_s), str(max_temp_mc), mask,
             THERMAL_DIR, binary_remote, *flags]
    return " ".join(shlex.quote(word) for word in words)


def push_binary(adb: Adb, serial: str, settings: DeviceSettings, tool: DeviceTool) -> str:
    """Push the benchmark binary unless the same bytes are already cached on the device."""
    digest = _sha256(settings.binary)
    remote = f"{settings.device_dir}/{tool.binary}-{digest[:16]}"
    cached = adb.shell(serial, f"sha256sum {shlex.quote(remote)} 2>/dev/null").stdout.split()
    if not cached or cached[0] != digest:
        adb.push(serial, settings.binary, remote)
    adb.check_shell(serial, f"chmod 755 {shlex.quote(remote)}", f"making {tool.binary} executable")
    return remote


def remove_quietly(adb: Adb, serial: str, paths: list[str]) -> None:
    """Remove pushed files; a device that is gone keeps them (the error that got here is the one to report)."""
    try:
        adb.shell(serial, "rm -f " + " ".join(shlex.quote(p) for p in paths), timeout=30)
    except ToolError:
        pass


def run_device_bench(adb: Adb, serial: str, files: dict[tuple[str, str], Path], cases: list[DeviceCase],
                     settings: DeviceSettings,
                     progress: Callable[[str], None] = lambda _: None) -> tuple[dict, list[DeviceResult]]:
    """Run every case on the device; returns (device facts, results). Any failure raises before
    a result is returned, so no partial report can be written."""
    tool = TOOLS[cases[0].runtime]
    facts = device_facts(adb, serial)
    check_device_memory(facts, files, cases)
    mask = core_mask({int(c): f for c, f in facts["cores"].items()}, settings.cores)
    adb.check_shell(serial, f"mkdir -p {shlex.quote(settings.device_dir)}", "creating the work folder")
    pushed: list[str] = [f"{settings.device_dir}/run_benchmark.sh"]
    try:
        progress(f"pushing {tool.binary} ({settings.binary.stat().st_size / 1e6:.1f} MB, cached by checksum)")
        binary_remote = push_binary(adb, serial, settings, tool)
        adb.push(serial, RUNNER, pushed[0])
        remotes = {}
        for key, path in files.items():
            remotes[key] = f"{settings.device_dir}/{'-'.join(key)}-{path.name}"
            pushed.append(remotes[key])
            progress(f"pushing {path.name}")
            adb.push(serial, path, remotes[key])
        names = {key: input_tensor_name(path) if path.suffix == ".tflite" else None for key, path in files.items()}
        results = []
        for i, case in enumerate(cases):
            progress(f"[{i + 1}/{len(cases)}] {case.label} on {serial} (cores {settings.cores}={mask}, "
                     f"cool-down {settings.cooldown_s} s)")
            command = benchmark_command(settings, binary_remote, remotes[case.key], names[case.key], case, mask)
            results.append(_until_stable(adb, serial, command, case, mask, settings, tool, progress))
        facts["thermal_after_c"] = read_thermal(adb, serial)
        facts["benchmark_tool"] = "stand-in" if any(r.output.standin for r in results) else tool.binary
        facts["runtime"] = tool.runtime
        return facts, results
    finally:
        if not settings.keep:
            remove_quietly(adb, serial, pushed)


def _until_stable(adb: Adb, serial: str, command: str, case: DeviceCase, mask: str, settings: DeviceSettings,
                  tool: DeviceTool, progress: Callable[[str], None]) -> DeviceResult:
    """Run one case until the means of its runs vary by at most settings.cv_target (at least two
    runs), or settings.max_repeats runs; each run has its own cool-down and temperature gate."""
    outputs, temperatures = [], []
    while True:
        result = adb.shell(serial, command, timeout=settings.timeout_s)
        text = result.stdout + "\n" + result.stderr
        if result.exit_code != 0:
            raise ToolError(f"{tool.binary} exited with code {result.exit_code} for {case.label}: {last_line(text)}")
        outputs.append(tool.parse(text, settings))
        temperatures.append(hottest_zones(text))
        cv = coefficient_of_variation([o.inference_avg_us for o in outputs])
        if len(outputs) >= settings.max_repeats or (cv is not None and cv <= settings.cv_target):
            break
        progress(f"  run {len(outputs)}: run-to-run CV {100 * cv:.1f}% > {100 * settings.cv_target:g}%, again"
                 if cv is not None else f"  run {len(outputs)} done, again for a CV")
    delegated = parse_delegation(text)
    return DeviceResult(case, pooled(outputs), mask, tuple(o.inference_avg_us for o in outputs),
                        temperatures[0]["before"], temperatures[-1]["after"], delegated.format() if delegated else None)


def device_case_record(result: DeviceResult, device: str, model: dict, macs_per_pixel: float | None,
                       cv_target: float) -> dict:
    """A report case in the host report's schema. benchmark_model reports mean/min/max/std but no
    per-run times, so median and p90 are None rather than invented; executor_runner prints each run."""
    import numpy as np

    out, case = result.output, result.case
    steady = out.steady
    n, _, h, w = case.shape
    mean_ms = out.inference_avg_us / 1000
    runs_ms = np.asarray(out.runs_us) / 1000 if out.runs_us else None
    latency = {"runs": steady.count if steady else None, "min_ms": steady.min_us / 1000 if steady else None,
               "median_ms": float(np.median(runs_ms)) if runs_ms is not None else None, "mean_ms": mean_ms,
               "p90_ms": float(np.percentile(runs_ms, 90)) if runs_ms is not None else None,
               "max_ms": steady.max_us / 1000 if steady else None, "std_ms": steady.std_us / 1000 if steady else None}
    macs = macs_per_pixel * n * h * w if macs_per_pixel else None
    cv = result.cv
    return {"device": device, **model, "graph": case.graph, "runtime": case.runtime,
            "precision": case.precision,
            "delegate": case.delegate, "cores_mask": result.cores_mask, "input": list(case.shape),
            "threads": case.threads, "latency": latency, "first_ms": out.first_us / 1000 if out.first_us else None,
            "init_ms": out.init_us / 1000, "peak_rss_mb": out.peak_memory_mb or out.memory_overall_mb,
            "params": model.get("params"), "macs": macs, "gflops": 2 * macs / (mean_ms * 1e6) if macs else None,
            "ceiling_gops": None, "ceiling_fraction": None,
            "repeats": len(result.repeat_means_us), "repeat_means_ms": [m / 1000 for m in result.repeat_means_us],
            "cv": cv, "cv_target": cv_target, "stable": result.stable(cv_target),
            "thermal_before_c": result.thermal_before_c, "thermal_after_c": result.thermal_after_c,
            "delegation": result.delegation}
