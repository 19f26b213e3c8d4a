"""ExecuTorch .pte files: `torch.export` of a deploy graph with dynamic height and width (up to
MAX_SIDE LR pixels, from MIN_SIDE; a tile graph keeps its tile and takes any batch), lowered with the XNNPACK
partitioner; what XNNPACK did not take runs on ExecuTorch's portable kernels.

The edgesr metadata rides inside the program as the constant method `edgesr_metadata`, a slot
that `edgesr.metadata` fills in place (see there)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edgesr.errors import ToolError
from edgesr.extras import require
from edgesr.metadata import PTE_METHOD, pte_slot
from edgesr.quiet import captured_output

MAX_SIDE = 2048  # the declared bounds of the dynamic height and width (LR pixels); SMSR's
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


def export_pte(module, path: Path, colors: int, tile: int | None = None) -> None:
    """Write `module` (a deploy graph, NCHW float32) as a .pte lowered to XNNPACK: dynamic H and W
    in [MIN_SIDE, MAX_SIDE], or for a tile graph the tile with a dynamic batch."""
    import torch
    from torch.export import Dim, export

    exir, partitioner = _program_modules()
    module = module.eval()
    if tile:
        example = torch.zeros(2, colors, tile, tile)
        dynamic = {0: Dim("batch", min=1, max=4096)}
    else:  # a graph that pads its input to a multiple itself is exported on multiples (its runner pads)
        m = pads_to_multiple(module)
        example = torch.zeros(1, colors, 64, 64)
        dynamic = {2: m * Dim("height", min=-(-MIN_SIDE // m), max=MAX_SIDE // m),
                   3: m * Dim("width", min=-(-MIN_SIDE // m), max=MAX_SIDE // m)}
    try:
        with captured_output("ExecuTorch export"):
            program = export(module, (example,), dynamic_shapes=(dynamic,))
            edge = exir.to_edge_transform_and_lower(program, partitioner=[partitioner()],
                                                    constant_methods={PTE_METHOD: pte_slot()})
            buffer = edge.to_executorch().buffer
    except Exception as exc:  # noqa: BLE001  (torch.export / exir raise many types)
        raise ToolError(f"ExecuTorch could not export {type(module).__name__}: {' '.join(str(exc).split())[:300]}"
                        ) from None
    Path(path).write_bytes(buffer)


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
