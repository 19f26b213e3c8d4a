"""Runtimes behind one call signature, the Graph protocol: NCHW float32 in the model's pixel
range -> NCHW out. PyTorch modules, ONNX Runtime sessions, LiteRT interpreters and ExecuTorch
programs."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from edgesr.atomic import published_name
from edgesr.errors import EdgeSRError, ToolError, UserError
from edgesr.quiet import NativeOutputError, captured_output

EMPTY_INT8_SCALE = 1e-7  # an int8 scale below this spans less than 2.6e-5: a tensor calibrated on zeros
MESSAGE_CHARS = 200  # a runtime's message is shortened to this in a one-line error

if TYPE_CHECKING:  # torch loads only for TorchGraph: ONNX Runtime / LiteRT workers never import it
    import torch
    import torch.nn as nn


class Graph(Protocol):
    """Anything that maps an LR batch (NCHW, float32) to its SR output (NCHW, float32)."""

    def __call__(self, x: np.ndarray) -> np.ndarray: ...

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        """Stage `x` in the runtime's own layout; the returned call runs one inference
        (copy-in, invoke, fetch of the output) and is what benchmarks time."""
        ...


class TorchGraph:
    """A PyTorch module in eval mode, run without autograd."""

    def __init__(self, module: nn.Module, threads: int | None = None):
        import torch

        self.module = module.eval()
        if threads:
            torch.set_num_threads(threads)

    @property
    def threads(self) -> int:
        import torch

        return torch.get_num_threads()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.bind(x)().numpy()

    def bind(self, x: np.ndarray) -> Callable[[], torch.Tensor]:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(x))

        def run() -> torch.Tensor:
            with torch.inference_mode():
                return self.module(tensor)

        return run


class OnnxGraph:
    """An ONNX file run by ONNX Runtime on the CPU. spin=False stops the session's idle worker
    threads from busy-waiting: needed when several sessions take turns (a ClassSR bundle), or
    the idle sessions' spinning threads take the cores from the one that is running."""

    def __init__(self, path: Path, threads: int | None = None, spin: bool = True):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    @property
    def threads(self) -> int:
        """The intra-op thread count the session applied."""
        return self.session.get_session_options().intra_op_num_threads

    def __call__(self, x: np.ndarray) -> np.ndarray:
        try:
            return self.bind(x)()
        except Exception as exc:  # noqa: BLE001
            raise ToolError(f"ONNX Runtime failed on {self.path.name} for input {x.shape}: "
                            f"{_first_line(exc)}") from None

    def bind(self, x: np.ndarray) -> Callable[[], np.ndarray]:
        feed = {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        return lambda: self.session.run(None, feed)[0]


class TfliteGraph:
    """A .tflite file run by the LiteRT interpreter (NHWC inside; int8 I/O handled)."""

    def __init__(self, path: Path, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self.threads = threads or os.cpu_count()
        self.interpreter = Interpreter(model_path=str(path), num_threads=self.threads)
        self.input = self.interpreter.get_input_details()[0]
        self.output_index = self.interpreter.get_output_details()[0]["index"]
        self.shape: tuple[int, ...] | None = None

    @cached_property
    def blocks(self) -> tuple[int, int, int]:
        """(size multiple, receptive radius, scale) from the file's metadata, read when an odd side
        first arrives: a graph on 2x2 blocks (edgesr/nn/blocked.py) runs odd sides as even windows."""
        from edgesr import metadata

        described = metadata.read(self.path) or {}
        return (int(described.get("size_multiple") or 1), int(described.get("receptive_radius") or 0),
                int((described.get("io") or {}).get("scale") or 1))

    @property
    def fixed_side(self) -> int | None:
        """The side of a graph built for one square input size (a tile graph), else None."""
        signature = list(self.input["shape_signature"])
        return int(signature[1]) if len(signature) == 4 and signature[1] > 0 and signature[1] == signature[2] else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 4 and (x.shape[2] % 2 or x.shape[3] % 2) and self.blocks[0] > 1:
            from edgesr.tiling import run_even

            _, radius, scale = self.blocks
            return run_even(self, x, scale, radius)
        try:
            result = _dequantize(self.bind(x)(), self.interpreter.get_output_details()[0])
        except EdgeSRError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _litert_failure(self.path, self.interpreter, x.shape, exc) from None
        return result.transpose(0, 3, 1, 2) if result.ndim == 4 else result  # e.g. ClassSR's (N, classes) logits

    def stage(self, x: np.ndarray) -> np.ndarray:
        """The file's input for NCHW x: NHWC, int8 for int8 files; the interpreter is sized to it
        (so its output details give the output's shape)."""
        if (x.shape[2] % 2 or x.shape[3] % 2) and self.blocks[0] > 1:
            raise UserError(f"{self.path.name} computes on 2x2 pixel blocks: time it on even sizes "
                            f"(not {x.shape[2]}x{x.shape[3]})")
        nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        if nhwc.shape != self.shape:
            self.interpreter.resize_tensor_input(self.input["index"], nhwc.shape, strict=False)
            with captured_output("LiteRT allocate_tensors"):  # silences the XNNPACK INFO line
                self.interpreter.allocate_tensors()
            self.shape = nhwc.shape
        return _quantize(nhwc, self.input)

    def bind(self, x: np.ndarray) -> Callable[[], np.ndarray]:
        """The staged input is NHWC (and int8 for int8 models); the call returns raw NHWC output."""
        staged = self.stage(x)

        def run() -> np.ndarray:
            self.interpreter.set_tensor(self.input["index"], staged)
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self.output_index)

        return run

    def stored_int8_tensors(self, x: np.ndarray) -> tuple[list[tuple[np.ndarray, tuple[float, float]]],
                                                          tuple[float, float]]:
        """Every tensor this int8 file computes on input x (NCHW), dequantized (NCHW), with its
        representable range; and the input's range."""
        import warnings

        from ai_edge_litert.interpreter import Interpreter

        with warnings.catch_warnings():  # "intended for debugging": reading the tensors is what we want
            warnings.simplefilter("ignore")
            interpreter = Interpreter(model_path=str(self.path), experimental_preserve_all_tensors=True)
        nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], nhwc.shape, strict=False)
        detail = interpreter.get_input_details()[0]
        try:  # XNNPACK refuses some int8 files when it prepares them (allocate), others when run
            with captured_output("LiteRT allocate_tensors"):
                interpreter.allocate_tensors()
            interpreter.set_tensor(detail["index"], _quantize(nhwc, detail))
            interpreter.invoke()
        except Exception as exc:  # noqa: BLE001  (LiteRT's own exception types)
            raise _litert_failure(self.path, interpreter, x.shape, exc) from None
        tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
        stored = []
        for index in sorted(_computed(interpreter)):
            if tensors[index]["dtype"] != np.int8 or not tensors[index]["quantization"][0]:
                continue
            value = _dequantize(interpreter.get_tensor(index), tensors[index])
            stored.append((value.transpose(0, 3, 1, 2) if value.ndim == 4 else value,
                           _int8_range(tensors[index])))
        return stored, _int8_range(detail)


def _computed(interpreter) -> set[int]:
    """Indices of the tensors the graph's ops write (not constants, not the input)."""
    return {o for op in interpreter._get_ops_details() for o in op["outputs"]}


def empty_int8_ranges(interpreter) -> list[str]:
    """Names of the int8 tensors computed by the graph whose range is empty: the converter gives a
    tensor that was 0 on every calibration input the scale 2e-6/255 (range ~1e-6), and XNNPACK
    refuses a convolution whose requantization scale in_scale * w_scale / out_scale is >= 256."""
    computed = _computed(interpreter)
    return [t["name"] for t in interpreter.get_tensor_details()
            if t["index"] in computed and t["dtype"] == np.int8
            and 0 < max(t["quantization_parameters"]["scales"], default=1.0) < EMPTY_INT8_SCALE]


def _litert_failure(path: Path, interpreter, shape: tuple[int, ...], exc: BaseException) -> ToolError:
    """LiteRT's failure as one line; when the file has int8 tensors with an empty range (the usual
    reason XNNPACK cannot prepare an int8 file), the line names them and what to export instead."""
    cause = exc.__cause__ if isinstance(exc, NativeOutputError) else exc  # LiteRT's own, not the capture's
    line = f"LiteRT failed on {published_name(path)} for input {tuple(shape)}: {litert_reason(cause)}"
    empty = sorted(empty_int8_ranges(interpreter), key=lambda name: (name.startswith("tfl."), len(name)))
    if not empty:
        return ToolError(line)
    which = f"{len(empty)} of its int8 tensors (e.g. '{empty[0]}') were" if len(empty) > 1 else f"its '{empty[0]}' was"
    return ToolError(f"{line}: {which} 0 on every calibration image, which leaves an empty int8 range: "
                     "export fp32 or fp16 («precision»)")


def litert_reason(exc: BaseException) -> str:
    """LiteRT's message as one short line. XNNPACK repeats its line once per failed attempt, with no
    separator, before the node that failed; the repeats are collapsed before the line is shortened,
    so the node stays in it."""
    line = re.sub(r"(.{8,}?)\1+", r"\1", _first_line(exc, limit=None))
    return re.sub(r"(?<=[a-z])(?=Node number)", "; ", line).rstrip(".")[:MESSAGE_CHARS]


def _int8_range(detail: dict) -> tuple[float, float]:
    scale, zero = detail["quantization"]
    return (-128 - zero) * scale, (127 - zero) * scale


def _first_line(exc: BaseException, limit: int | None = MESSAGE_CHARS) -> str:
    """The exception's first line, whitespace collapsed, at most `limit` characters (None: all)."""
    text = str(exc).strip()
    return " ".join(text.splitlines()[0].split())[:limit] if text else type(exc).__name__


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y
    scale, zero = detail["quantization"]
    return ((y.astype(np.float64) - zero) * scale).astype(np.float32)


class PteGraph:
    """An ExecuTorch .pte run by ExecuTorch's runtime on the CPU (NCHW float32 in and out; XNNPACK
    partitions inside). ExecuTorch has one process-wide threadpool, sized to the cores at first
    use; `threads` resizes it before the program loads (its XNNPACK partitions keep the pool they
    were created with, so it is never resized under a loaded program), and `threads` reads back
    the size the pool reports."""

    def __init__(self, path: Path, threads: int | None = None):
        from edgesr import metadata
        from edgesr.extras import require

        require("executorch", "executorch")
        with captured_output("loading ExecuTorch"):  # torchao and cpuinfo notices at import and load
            import executorch.kernels.quantized  # noqa: F401  (quantize/dequantize kernels outside XNNPACK)
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime

            self._pool = portable_lib
            self.path = Path(path)
            if threads and int(threads) != self.threads:
                _resize_threadpool(portable_lib, int(threads))
            self.method = Runtime.get().load_program(str(path)).load_method("forward")
            _PTE_POOLS.add(self.threads)
        described = metadata.read(self.path) or {}
        self.sides = int(described.get("min_side") or 0), int(described.get("max_side") or 0)
        self.multiple = int(described.get("pads_to_multiple") or 1)  # sides it takes; it pads others (export)
        self.max_batch = int(described.get("max_batch") or 0)  # a tile graph's declared batch bound
        self.scale = int((described.get("io") or {}).get("scale") or 1)

    @property
    def threads(self) -> int:
        return int(self._pool._threadpool_get_thread_count())

    def recorded_int8_ranges(self):
        """error_model.Ranges an int8 .pte records (its XNNPACK delegate keeps its tensors inside)."""
        from edgesr import metadata
        from edgesr.error_model import Ranges

        recorded = (metadata.read(self.path) or {}).get("int8_ranges")
        if recorded is None:
            raise UserError(f"{self.path.name} records no int8 ranges: export it again with «precision» int8")
        return Ranges.from_dict(recorded)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h, w = x.shape[2:] if x.ndim == 4 else (0, 0)
        m = self.multiple
        if (h % m or w % m) and m > 1:  # replicate-pad as the graph's own forward does, crop back
            x = np.pad(x, ((0, 0), (0, 0), (0, -h % m), (0, -w % m)), mode="edge")
        run = self.bind(x)
        try:
            y = run()
        except Exception as exc:  # noqa: BLE001
            raise ToolError(f"ExecuTorch failed on {self.path.name} for input {x.shape}: {_first_line(exc)}") from None
        return y[..., :h * self.scale, :w * self.scale] if m > 1 else y

    def bind(self, x: np.ndarray) -> Callable[[], np.ndarray]:
        import torch

        low, high = self.sides
        if x.ndim == 4 and high and not low <= min(x.shape[2:]) <= max(x.shape[2:]) <= high:
            raise UserError(f"{self.path.name} takes sides of {low} to {high} pixels (the bounds declared at export), "
                            f"not {x.shape[2]}x{x.shape[3]}: tile a larger image (e.g. «tile» 512), pad a smaller one")
        if self.max_batch and x.shape[0] > self.max_batch:
            raise UserError(f"{self.path.name} takes batches of 1 to {self.max_batch} tiles (the bound declared at "
                            f"export), not {x.shape[0]}: run larger sets in batches of {self.max_batch}")
        tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return lambda: self.method.execute([tensor])[0].numpy()


_PTE_POOLS: set[int] = set()  # the pool sizes .pte programs of this process were loaded with


def _resize_threadpool(portable_lib, threads: int) -> None:
    """Resize ExecuTorch's process-wide pool; refused once a program runs on the current one."""
    if _PTE_POOLS:
        raise ToolError(f"ExecuTorch's threadpool is shared by the whole process and programs already run on "
                        f"{max(_PTE_POOLS)} thread(s): open .pte files at {threads} thread(s) in a fresh process")
    portable_lib._unsafe_reset_threadpool(threads)


def open_runtime_file(path: Path, threads: int | None = None, spin: bool = True) -> Graph:
    """Open one exported .onnx, .tflite or .pte file with its runtime; `spin` is ONNX Runtime's
    busy-waiting of idle worker threads (see OnnxGraph). A file the runtime rejects (corrupt,
    truncated, not a model) is a ToolError naming the runtime's reason."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"model file {path} is a folder: open a bundle folder with edgesr.model_files.open_model")
    if not path.is_file():
        raise UserError(f"model file {path} not found")
    runtimes = {".onnx": ("ONNX Runtime", lambda: OnnxGraph(path, threads, spin)),
                ".tflite": ("LiteRT", lambda: TfliteGraph(path, threads)),
                ".pte": ("ExecuTorch", lambda: PteGraph(path, threads))}
    if path.suffix not in runtimes:
        raise UserError(f"unknown model file type '{path.suffix}': expected .onnx, .tflite, .pte or a bundle folder")
    runtime, make = runtimes[path.suffix]
    try:
        return make()
    except (UserError, ToolError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001  (each runtime has its own exception types)
        raise ToolError(f"{runtime} cannot load {path}: {_first_line(exc)}: is it a complete file written by "
                        "'edgesr export'?") from None


def check_io(graph: Graph, path: Path, colors: int, scale: int, described: str) -> None:
    """Refuse a model that does not fit the model it is used as: one probe inference must take
    `colors` channels and upscale by `scale` (`described` names that model for the message)."""
    probe = np.zeros((1, colors, 32, 32), dtype=np.float32)
    try:
        shape = np.asarray(graph(probe)).shape
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001  (ToolError included: the runtime rejected the input's layout)
        raise UserError(f"model file {path} does not run on {colors}-channel input ({_first_line(exc)}): it was "
                        f"exported for another model than {described}; pass the matching «model» and "
                        "«variant»") from None
    expected = (1, colors, 32 * scale, 32 * scale)
    if shape != expected:
        found = f"x{shape[2] / 32:g} with {shape[1]} channel(s)" if len(shape) == 4 else f"output shape {shape}"
        raise UserError(f"model file {path} upscales {found}, but {described} upscales x{scale} with {colors} "
                        "channel(s): "
                        "pass the «variant» and «scale» it was exported with")
