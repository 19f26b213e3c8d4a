"""ExecuTorch .pte files: `torch.export` of a deploy graph with dynamic height and width (up to
MAX_SIDE LR pixels, from MIN_SIDE; a tile graph keeps its tile and takes 1..TILE_BATCH tiles), lowered with the
XNNPACK partitioner; what XNNPACK did not take runs on ExecuTorch's portable kernels. Memory is planned for the
declared upper bounds (`_keep_declared_bounds`).

int8 goes through PyTorch 2 export quantization (PT2E) with the XNNPACK quantizer: weights per output
channel symmetric in [-127, 127], activations per tensor asymmetric in [-128, 127], ranges observed on the
calibration crops (min/max), the same scheme as LiteRT's. The XNNPACK delegate keeps its tensors inside,
so the file records each int8 range it stores, aligned with the deploy graph's ops (`int8_ranges`):
what the error model needs to check it (edgesr.check).

The edgesr metadata rides inside the program as the constant method `edgesr_metadata`, a slot
that `edgesr.metadata` fills in place (see there)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edgesr.deployable import TILE_BATCH
from edgesr.errors import ToolError
from edgesr.extras import require
from edgesr.metadata import PTE_METHOD, pte_slot
from edgesr.quiet import captured_output

# ExecuTorch plans activation memory for the largest input it declares: ECBSR-M4C16 x4 held 1.3-1.5 GB at a
# bound of 2048 whatever the input (LiteRT 0.3 GB); 1024 covers 960x540 -> 4K at x2 and 480x270 -> 1080p at x4
MAX_SIDE = 1024  # the declared bounds of the dynamic height and width (LR pixels); SMSR's
MIN_SIDE = 4  # stride-2 mask branch cannot take sides of 1 or 2 (torch.export proves it)
# ops outside the delegates that move no data: shape arithmetic and views of planned memory
BOOKKEEPING = ("executorch_prim::", "aten::sym_size")


def _program_modules():
    require("executorch", "executorch")
    with captured_output("importing ExecuTorch"):  # torchao and pytree notices at import
        import executorch.exir as exir
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    return exir, XnnpackPartitioner


def pads_to_multiple(module) -> int:
    """The multiple a deploy graph replicate-pads its input sides to (and crops back), 1 for none."""
    return int(getattr(module, "pads_to_multiple", 1))


def export_pte(module, path: Path, colors: int, tile: int | None = None, calibration: list | None = None,
               pixel_range: float = 255.0) -> dict:
    """Write `module` (a deploy graph, NCHW float32) as a .pte lowered to XNNPACK: dynamic H and W
    in [MIN_SIDE, MAX_SIDE], or for a tile graph the tile with a dynamic batch; int8 when
    `calibration` (NCHW float32 crops) is given. Returns what the file's metadata adds (int8: its ranges)."""
    import torch
    from torch.export import Dim, export

    exir, partitioner = _program_modules()
    module = module.eval()
    added = {}
    if tile:
        example = torch.zeros(2, colors, tile, tile)
        dynamic = {0: Dim("batch", min=1, max=TILE_BATCH)}
    else:  # a graph that pads its input to a multiple itself is exported on multiples (its runner pads)
        m = pads_to_multiple(module)
        example = torch.zeros(1, colors, 64, 64)
        dynamic = {2: m * Dim("height", min=-(-MIN_SIDE // m), max=MAX_SIDE // m),
                   3: m * Dim("width", min=-(-MIN_SIDE // m), max=MAX_SIDE // m)}
    try:
        with captured_output("ExecuTorch export"):
            program = export(module, (example,), dynamic_shapes=(dynamic,))
            if calibration is not None:
                quantized = _quantized(program, calibration, pixel_range)
                added["int8_ranges"] = _recorded_ranges(module, quantized, calibration[0], pixel_range).to_dict()
                program = export(quantized, (example,), dynamic_shapes=(dynamic,))
            edge = exir.to_edge_transform_and_lower(program, partitioner=[partitioner()],
                                                    constant_methods={PTE_METHOD: pte_slot()})
            _keep_declared_bounds(edge.exported_program())
            buffer = edge.to_executorch().buffer
    except Exception as exc:  # noqa: BLE001  (torch.export / exir raise many types)
        raise ToolError(f"ExecuTorch could not export {type(module).__name__}: {' '.join(str(exc).split())[:300]}"
                        ) from None
    Path(path).write_bytes(buffer)
    return added


def _keep_declared_bounds(program) -> None:
    """Give each input dimension its declared upper bound (the program's range constraints) back
    before memory planning.

    Lowering can narrow a bound with a guard taken on the tracing example: the XNNPACK backend's
    preprocessing re-runs convolutions on fake tensors, and ATen's conv backend choice asks
    `batch >= 16` for a 1x1 kernel, so a tile graph traced with 2 tiles came out bounded to 15 and
    ExecuTorch refused 16 ("resize a bounded tensor"). That is a CPU kernel heuristic the delegate
    does not depend on (XNNPACK takes its shapes at run time): the declared range is the true one."""
    environments = {size.node.shape_env for node in program.graph.nodes if node.op == "placeholder"
                    for size in getattr(node.meta.get("val"), "shape", ()) if hasattr(size, "node")}
    for environment in environments:
        ranges = environment.var_to_range
        for symbol, declared in program.range_constraints.items():
            if symbol.is_Symbol and symbol in ranges:  # a free size symbol (derived ones like 2*s follow it)
                ranges[symbol] = type(ranges[symbol])(ranges[symbol].lower, declared.upper)


def _quantized(program, calibration: list, pixel_range: float):
    """The PT2E-quantized graph (explicit quantize/dequantize ops) of an exported program."""
    import executorch.kernels.quantized  # noqa: F401  (the out variants of quantize/dequantize)
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.observer import MinMaxObserver
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    observed = prepare_pt2e(program.module(), quantizer)
    with torch.no_grad():
        for crop in calibration:
            observed(torch.from_numpy(crop))
        for name in _pixel_observers(observed):  # input and output span the pixel range, as in LiteRT's files
            fixed = MinMaxObserver(dtype=torch.int8, qscheme=torch.per_tensor_affine, quant_min=-128, quant_max=127)
            fixed(torch.tensor([0.0, pixel_range]))
            setattr(observed, name, fixed)
    return convert_pt2e(observed)


def _pixel_observers(observed) -> set[str]:
    """The observers of the graph input and of the graph output (pixels both); the output's may sit
    before data movement (e.g. pixel_shuffle), whose output shares its input's range."""
    names = set()
    for node in observed.graph.nodes:
        if node.op == "call_module" and node.args and node.args[0].op == "placeholder":
            names.add(node.target)
        if node.op == "output":
            source = node.args[0][0]
            while source.op == "call_function":
                source = source.args[0]
            if source.op == "call_module":
                names.add(source.target)
    return names


def _recorded_ranges(module, quantized, crop, pixel_range: float):
    """The int8 ranges the quantized graph stores, aligned with `module`'s ops by value on `crop`
    (error_model.match_ranges): each dequantized tensor with its range (qmin - zero) s .. (qmax - zero) s."""
    import torch

    from edgesr.error_model import match_ranges, op_outputs

    stored, input_range = [], None
    dequantize = torch.ops.quantized_decomposed.dequantize_per_tensor.default

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            value = super().run_node(node)
            if node.op == "call_function" and node.target == dequantize:
                scale, zero, low, high = (float(a) for a in node.args[1:5])
                span = ((low - zero) * scale, (high - zero) * scale)
                quantize = node.args[0]  # a quantize op, or a constant stored quantized
                source = quantize.args[0] if isinstance(quantize, torch.fx.Node) and quantize.args else None
                if source is not None and source.op == "placeholder":
                    nonlocal input_range
                    input_range = span
                else:
                    stored.append((value.detach().numpy(), span))
            return value

    with torch.no_grad():
        Recorder(quantized).run(torch.from_numpy(crop))
    if input_range is None:  # the input is padded or sliced before its first quantize: model it as pixels
        input_range = (0.0, pixel_range)
    return match_ranges(op_outputs(module, crop), stored, input_range)


@dataclass(frozen=True)
class PteDelegation:
    """What XNNPACK runs in a .pte: its partitions, and the ops left to ExecuTorch's kernels."""

    partitions: int
    kernels: Counter  # every operator outside the delegates -> count (bookkeeping included)

    @property
    def ops(self) -> int:
        """Instructions of the forward method, each XNNPACK partition counted as one."""
        return self.partitions + sum(self.kernels.values())

    @property
    def outside(self) -> Counter:
        """The compute ops outside XNNPACK (shape arithmetic and views left out)."""
        return Counter({op: n for op, n in self.kernels.items() if not op.startswith(BOOKKEEPING)})

    def to_dict(self) -> dict:
        return {"partitions": self.partitions, "outside": dict(self.outside), "kernels": dict(self.kernels)}

    def format(self) -> str:
        outside = self.outside
        left = (f"outside: {', '.join(f'{k} x{v}' for k, v in outside.most_common())}" if outside else
                "every compute op in XNNPACK")
        bookkeeping = sum(self.kernels.values()) - sum(outside.values())
        views = f" ({bookkeeping} shape/view ops outside, no data moved)" if bookkeeping else ""
        return f"{self.partitions} XNNPACK partition{'s' if self.partitions != 1 else ''}; {left}{views}"


def _program(path: Path):
    require("executorch", "executorch")
    with captured_output("reading a .pte"):
        from executorch.exir._serialize._program import deserialize_pte_binary

        program = deserialize_pte_binary(Path(path).read_bytes())
    return getattr(program, "program", program)


def pte_delegation(path: Path) -> PteDelegation:
    """Partitions and the operators outside them in the 'forward' method of a .pte."""
    plan = next(p for p in _program(path).execution_plan if p.name == "forward")
    outside, partitions = Counter(), 0
    for chain in plan.chains:
        for instruction in chain.instructions:
            args = instruction.instr_args
            if hasattr(args, "delegate_index"):
                partitions += 1
            elif hasattr(args, "op_index"):
                op = plan.operators[args.op_index]
                outside[op.name + (f".{op.overload}" if op.overload and op.overload != "default" else "")] += 1
    return PteDelegation(partitions, outside)


def pte_op_counts(path: Path) -> Counter[str]:
    """Operators of a .pte's forward: each XNNPACK partition as 'XNNPACK', the rest by name."""
    delegation = pte_delegation(path)
    return Counter({"XNNPACK": delegation.partitions, **delegation.outside})


def planned_memory(path: Path) -> int:
    """Bytes of the activation buffers the 'forward' method plans (for its largest declared input)."""
    plan = next(p for p in _program(path).execution_plan if p.name == "forward")
    return int(sum(plan.non_const_buffer_sizes))
