"""The deployable form of a model: the graphs a file format stores (one, or several with
host-side glue between them, like ClassSR's classifier and subnets) and the glue's parameters.
Exporters take any deployable; runtimes run it through the family's glue."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edgesr.family import Config, Family, IOSpec

TILE_BATCH = 64  # a tile graph takes 1..TILE_BATCH tiles per call; its glue runs larger sets in such batches

if TYPE_CHECKING:
    import torch.nn as nn

    from edgesr.runners import Graph


@dataclass(frozen=True)
class GraphSpec:
    """One graph of a deployable and the inputs it is exported for."""

    module: nn.Module
    tile: int | None = None  # None: images of any height and width; else tile x tile inputs, TILE_BATCH at most
    fixed_precision: str | None = None  # stored at this precision whatever the export's (a router: fp32)
    output: str = "sr"  # output tensor name

    def precision(self, requested: str) -> str:
        return self.fixed_precision or requested


@dataclass
class Deployable:
    """A family's deploy graphs with what joins them. `params` are the glue's own settings (JSON),
    kept in a bundle's manifest so the glue can be rebuilt from files alone."""

    family: Family
    config: Config
    graphs: dict[str, GraphSpec]
    params: dict = field(default_factory=dict)

    @property
    def io(self) -> IOSpec:
        return IOSpec.of(self.config)

    @property
    def single(self) -> bool:
        """One graph, no glue: exported as one file; otherwise a bundle folder."""
        return list(self.graphs) == ["deploy"]

    def runner(self, graphs: Mapping[str, Graph]) -> Graph:
        """Whole-image inference over runtime graphs of the parts (the family's glue)."""
        return self.family.glue(self.params, self.io, graphs)

    def torch_runner(self) -> Graph:
        """Whole-image inference in PyTorch."""
        from edgesr.runners import TorchGraph

        return self.runner({name: TorchGraph(spec.module) for name, spec in self.graphs.items()})


def single_graph(family: Family, config: Config, module: nn.Module) -> Deployable:
    """The deployable of a family whose deploy form is one graph on whole images."""
    return Deployable(family, config, {"deploy": GraphSpec(module.eval())})
