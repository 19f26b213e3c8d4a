"""`edgesr verify --device adb`: the exported .tflite files run on each phone, per delegate and
precision, on the same random and photo inputs as the host `verify`, and are checked against the
training graph in the same rounding-error model (edgesr/check.py).

Each graph call becomes one benchmark_model run: the staged input tensor is pushed as raw bytes
(--input_layer_value_files), the output tensor comes back raw (--output_filepath). A bundle's glue
(ClassSR's routing and stitching) runs on the host; every graph it calls runs on the phone.

Bounds: a CPU or XNNPACK run is judged at the file's precision, as on the host. A GPU delegate
computes in fp16 unless told not to (TFLite's default --gpu_precision_loss_allowed=true), NNAPI when
--nnapi_allow_fp16=true: those are judged with the fp16-compute model (fp16 weights, tensors and
arithmetic). int8 files keep their int8 bound on every delegate."""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgesr.android.adb import Adb, DeviceLost
from edgesr.android.bench import (
    DELEGATES,
    TOOLS,
    DeviceCase,
    DeviceSettings,
    check_device_memory,
    push_binary,
    remove_quietly,
)
from edgesr.android.facts import device_facts
from edgesr.android.fleet import Phone, on_each
from edgesr.android.output import STANDIN_BANNER, Delegated, last_line, parse_benchmark_output, parse_delegation
from edgesr.bench.report import device_title
from edgesr.check import Check, Pair, Run, check_pair, collect
from edgesr.errors import ToolError, UserError
from edgesr.export.exporter import export_to_scratch, reference_subject, scratch_folder, stored_form
from edgesr.images import verification_inputs
from edgesr.model import Prepared
from edgesr.model_files import LoadedModel, open_model
from edgesr.runners import TfliteGraph

FP16_FLAGS = {"gpu": ("gpu_precision_loss_allowed", True), "nnapi": ("nnapi_allow_fp16", False)}  # flag, default


def _flag(extra_args: tuple[str, ...], name: str, default: bool) -> bool:
    """A boolean benchmark_model flag's value among the extra arguments (the last one wins)."""
    value = default
    for arg in extra_args:
        key, _, text = arg.lstrip("-").partition("=")
        if key == name:
            value = text.lower() not in ("false", "0")
    return value


def bound_precision(delegate: str, precision: str, extra_args: tuple[str, ...]) -> str:
    """The error model a phone run is judged by (see the module doc)."""
    if precision == "int8" or delegate not in FP16_FLAGS:
        return precision
    name, default = FP16_FLAGS[delegate]
    return "fp16-compute" if _flag(extra_args, name, default) else precision


@dataclass
class PhoneSession:
    """benchmark_model on one phone with one delegate: runs a pushed graph on a tensor."""

    adb: Adb
    serial: str
    binary: str  # on the device
    delegate: str
    settings: DeviceSettings
    require_full: bool
    delegation: dict[str, Delegated | None] = field(default_factory=dict)  # per graph name, as reported
    standin: bool = False  # the binary is edgesr's stand-in (it says so in its output)

    def run(self, graph: str, graph_remote: str, input_name: str, staged: np.ndarray, out_shape: tuple[int, ...],
            out_dtype: np.dtype) -> np.ndarray:
        work = self.settings.device_dir
        remote_in, remote_out = f"{work}/verify-input.bin", f"{work}/verify-output.bin"
        with tempfile.TemporaryDirectory(prefix="edgesr-phone-") as tmp:
            local_in, local_out = Path(tmp) / "input.bin", Path(tmp) / "output.bin"
            local_in.write_bytes(np.ascontiguousarray(staged).tobytes())
            self.adb.push(self.serial, local_in, remote_in)
            n, h, w, c = staged.shape
            escaped = input_name.replace(":", "::")  # the flag's own escape for names such as input:0
            flags = [f"--graph={graph_remote}", "--num_threads=1", "--warmup_runs=0", "--num_runs=1",
                     "--min_secs=0", "--warmup_min_secs=0", f"--input_layer={input_name}",
                     f"--input_layer_shape={n},{h},{w},{c}", f"--input_layer_value_files={escaped}:{remote_in}",
                     f"--output_filepath={remote_out}", *DELEGATES[self.delegate],
                     *(["--require_full_delegation=true"] if self.require_full else []), *self.settings.extra_args]
            command = " ".join(shlex.quote(word) for word in [self.binary, *flags])
            result = self.adb.shell(self.serial, f"rm -f {shlex.quote(remote_out)}; {command}",
                                    timeout=self.settings.timeout_s)
            text = result.stdout + "\n" + result.stderr
            if result.exit_code != 0:
                if "Disallowed CPU fallback detected" in text:
                    raise ToolError(f"the {self.delegate} delegate left part of {Path(graph_remote).name} to the "
                                    "CPU (full delegation was required)")
                raise ToolError(f"benchmark_model exited with code {result.exit_code} for "
                                f"{Path(graph_remote).name}: {last_line(text)}")
            parse_benchmark_output(text)  # a binary without --output_filepath says "Unconsumed cmdline flags"
            self.delegation[graph] = parse_delegation(text)
            self.standin = STANDIN_BANNER in text
            self.adb.pull(self.serial, remote_out, local_out)
            data = local_out.read_bytes()
        expected = int(np.prod(out_shape)) * np.dtype(out_dtype).itemsize
        if len(data) != expected:
            raise ToolError(f"benchmark_model wrote {len(data)} output bytes for {Path(graph_remote).name}, not "
                            f"{expected} (one {'x'.join(map(str, out_shape))} {np.dtype(out_dtype).name} tensor): "
                            "does this build of benchmark_model have the output_filepath flag?")
        return np.frombuffer(data, dtype=out_dtype).reshape(out_shape).copy()


class PhoneGraph(TfliteGraph):
    """A .tflite graph whose inference runs on a phone: staged and read back as LiteRT does on the
    host (NHWC, int8 I/O), so the host glue and error model treat it like any other file."""

    def __init__(self, path: Path, session: PhoneSession, remote: str, name: str):
        super().__init__(path, threads=1)
        self.session, self.remote, self.name = session, remote, name

    def bind(self, x: np.ndarray) -> Callable[[], np.ndarray]:
        staged = self.stage(x)
        # the output's shape: some ops (TRANSPOSE_CONV with a batch) only know it after a host run
        self.interpreter.set_tensor(self.input["index"], staged)
        self.interpreter.invoke()
        out = self.interpreter.get_output_details()[0]
        shape, dtype = tuple(out["shape"]), out["dtype"]
        return lambda: self.session.run(self.name, self.remote, self.input["name"], staged, shape, dtype)


@dataclass(frozen=True)
class PhoneRow:
    """One (phone, delegate, precision): its check against the reference, or why it has none."""

    device: str
    delegate: str
    precision: str
    bound: str  # the precision of the error model it is judged by
    check: Check | None
    delegation: str | None  # what the delegate took, as benchmark_model reported it
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and self.check is not None and self.check.passed

    @property
    def result(self) -> str:
        return "ERROR" if self.error else self.check.result

    def to_dict(self) -> dict:
        return {"device": self.device, "delegate": self.delegate, "precision": self.precision, "bound": self.bound,
                "delegation": self.delegation, "error": self.error, "result": self.result, "passed": self.passed,
                "check": self.check.to_dict() if self.check else None}


@dataclass
class PhoneVerification:
    """Every row, the phones' facts, and the phones that failed as a whole."""

    label: str
    rows: list[PhoneRow]
    devices: list[dict]
    failed: list[dict]

    @property
    def passed(self) -> bool:
        return not self.failed and all(row.passed for row in self.rows)

    def problems(self) -> list[str]:
        """One line per row that did not pass and per phone that failed."""
        lines = [f"{f['device']}: {f['reason']}" for f in self.failed]
        for row in self.rows:
            if not row.passed:
                why = row.error or row.check.problem()
                lines.append(f"{row.device} {row.delegate} {row.precision}: {why}")
        return lines

    def table(self) -> str:
        wide = max([6] + [len(r.device) for r in self.rows])
        header = (f"{'device':<{wide}} {'delegate':<8} {'prec':<5} {'bound':<12} {'delegated':<26} {'inputs':>6} "
                  f"{'max-abs':>9} {'PSNR dB':>8} {'deviation':>10} {'bound':>9} {'used':>6}  result")
        lines = [header, "-" * len(header)]
        for r in self.rows:
            head = f"{r.device:<{wide}} {r.delegate:<8} {r.precision:<5} {r.bound:<12} {r.delegation or '-':<26} "
            if r.check is None:
                lines.append(f"{head}{'-':>6} {'':>9} {'':>8} {'':>10} {'':>9} {'':>6}  ERROR: {r.error}")
                continue
            c = r.check
            psnr = "inf" if not np.isfinite(c.stats.psnr_db) else f"{c.stats.psnr_db:.1f}"
            lines.append(f"{head}{c.inputs:>6} {c.stats.max_abs:>9.3g} {psnr:>8} {c.deviation:>10.3g} "
                         f"{c.bound:>9.3g} {100 * c.used:>5.0f}%  {r.result}")
        for f in self.failed:
            lines.append(f"{f['device']}: FAILED, no rows: {f['reason']}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"schema": "edgesr-verify-device/1", "model": self.label, "devices": self.devices,
                "rows": [r.to_dict() for r in self.rows], "failed": self.failed, "passed": self.passed}


@dataclass(frozen=True)
class _Export:
    form: Prepared  # the model the file stores
    path: Path
    files: dict[str, Path]
    model: LoadedModel


@dataclass(frozen=True)
class _PhoneRun:
    """One (delegate, precision) on one phone: its outputs on the inputs, or why it has none."""

    delegate: str
    precision: str
    outputs: list[np.ndarray] | None
    delegation: str | None
    error: str | None = None


def _delegation(session: PhoneSession) -> str | None:
    """What the delegate took of the graphs that ran: 'all (XNNPACK)', or the graphs it did not
    fully take ('partial (XNNPACK): net1 2 kernels')."""
    found = {name: d for name, d in session.delegation.items() if d is not None}
    if not found:
        return None
    delegate = next(iter(found.values())).delegate
    if all(d.complete for d in found.values()):
        return f"all ({delegate})"
    if len(session.delegation) == 1:
        return next(iter(found.values())).format()
    return f"partial ({delegate}): " + ", ".join(f"{name} {d.kernels} kernels" for name, d in found.items()
                                               if not d.complete)


def _on_phone(phone: Phone, exports: dict[str, _Export], delegates: list[str], inputs: list[np.ndarray],
              settings: DeviceSettings, require_full: bool, progress: Callable[[str], None]):
    """Every (delegate, precision) on one phone: (its facts, [_PhoneRun])."""
    adb, serial = phone.adb, phone.serial
    facts = device_facts(adb, serial)
    check_device_memory(facts, {(p, name): path for p, e in exports.items() for name, path in e.files.items()},
                        [DeviceCase(p, delegates[0], 1, x.shape, name) for p, e in exports.items() for name in e.files
                         for x in inputs])
    adb.check_shell(serial, f"mkdir -p {shlex.quote(settings.device_dir)}", "creating the work folder")
    tool = TOOLS["tflite"]
    pushed = [f"{settings.device_dir}/verify-input.bin", f"{settings.device_dir}/verify-output.bin"]
    runs = []
    standin = False
    try:
        binary = push_binary(adb, serial, settings, tool)
        remotes = {}
        for precision, export in exports.items():
            for name, path in export.files.items():
                remotes[(precision, name)] = f"{settings.device_dir}/verify-{precision}-{name}-{path.name}"
                pushed.append(remotes[(precision, name)])
                adb.push(serial, path, remotes[(precision, name)])
        for delegate in delegates:
            for precision, export in exports.items():
                progress(f"{phone.label}: {delegate} {precision} on {len(inputs)} inputs")
                session = PhoneSession(adb, serial, binary, delegate, settings, require_full)
                graphs = {name: PhoneGraph(path, session, remotes[(precision, name)], name)
                          for name, path in export.files.items()}
                runner = export.model.rewired(graphs)
                try:
                    outputs = [np.asarray(runner(x)) for x in inputs]
                except DeviceLost:
                    raise
                except (ToolError, UserError) as exc:
                    runs.append(_PhoneRun(delegate, precision, None, _delegation(session), str(exc)))
                    continue
                finally:
                    standin = standin or session.standin
                runs.append(_PhoneRun(delegate, precision, outputs, _delegation(session)))
        facts["benchmark_tool"] = "stand-in" if standin else "benchmark_model"
        return facts, runs
    finally:
        if not settings.keep:
            remove_quietly(adb, serial, pushed)


def verify_on_phones(prepared: Prepared, phones: list[Phone], precisions: list[str], delegates: list[str],
                     sizes: list[tuple[int, int]], settings: DeviceSettings, require_full: bool = False,
                     progress: Callable[[str], None] = lambda _: None, int8_form: str = "auto") -> PhoneVerification:
    """Export each precision's .tflite once, run it on every phone (in parallel) with every
    delegate on the verify inputs, and check each run against the reference graph on the host."""
    io, family = prepared.io, prepared.family
    named = verification_inputs(sizes, io.colors, io.pixel_range)
    inputs = [x for _, x in named]
    ref_name, ref = reference_subject(prepared)
    reference = collect({ref_name: ref}, named, progress)[ref_name]
    with scratch_folder() as scratch:
        exports = {}
        for precision in precisions:
            form = stored_form(prepared, "tflite", precision, int8_form)
            folder = Path(scratch) / precision
            folder.mkdir()
            path, files = export_to_scratch(form, "tflite", precision, folder, progress)
            exports[precision] = _Export(form, path, files, open_model(path))
        outcomes = on_each(phones, lambda phone: _on_phone(phone, exports, delegates, inputs, settings, require_full,
                                                            progress))
        models = {}
        rows, devices, failed = [], [], []
        for outcome in outcomes:
            label = outcome.phone.label
            if outcome.error is not None:
                failed.append({"device": label, "reason": outcome.error})
                continue
            facts, runs = outcome.result
            devices.append({**facts, "label": label, "ran_on": device_title(facts)})
            for run in runs:
                delegate, precision = run.delegate, run.precision
                bound = bound_precision(delegate, precision, settings.extra_args)
                if run.outputs is None:
                    rows.append(PhoneRow(label, delegate, precision, bound, None, run.delegation, run.error))
                    continue
                key = (precision, bound)
                if key not in models:
                    export = exports[precision]
                    models[key] = family.expectation(ref.model, export.form.deployable, bound, export.files)
                candidate = Run(run.outputs, [models[key](x) for x in inputs])
                check = check_pair(Pair(ref_name, f"tflite-{precision} on {delegate}", bound), reference,
                                   candidate, io.pixel_range)
                rows.append(PhoneRow(label, delegate, precision, bound, check, run.delegation))
    return PhoneVerification(prepared.label, rows, devices, failed)
