"""A model family: everything edgesr needs to know about one published SR design, behind one
small interface. A family parses its variant names and infers them from checkpoints, builds its
training graph, re-parameterizes it into a Deployable (one graph, or several with host-side glue
such as ClassSR's routing), rebuilds each deploy graph in Keras for TFLite, and carries its
training recipe. Families register with `@register` beside their class (edgesr's own in
edgesr.families) or, from another package, through the `edgesr.families` entry-point group:

    [project.entry-points."edgesr.families"]
    mynet = "mypackage.mynet:MyNetFamily"
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from edgesr.errors import EdgeSRError, UserError
from edgesr.resources import Footprint, check_model_fits

if TYPE_CHECKING:
    import numpy as np
    import torch.nn as nn

    from edgesr.deployable import Deployable, GraphSpec
    from edgesr.error_model import Modelled
    from edgesr.runners import Graph

ENTRY_POINTS = "edgesr.families"


class Config(Protocol):
    """What every family's architecture config exposes."""

    scale: int
    colors: int
    pixel_range: float

    @property
    def variant(self) -> str: ...

    def to_dict(self) -> dict: ...


class DataclassConfig:
    """Mixin for a dataclass config: to_dict() is its fields (subclasses add `variant`)."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class IOSpec:
    """What a model takes and gives: NCHW float32 with `colors` channels (1 = Y of BT.601 YCbCr,
    3 = RGB) in 0..pixel_range, output `scale` times larger, tensors named `input`/`output`."""

    colors: int
    pixel_range: float
    scale: int
    input: str = "lr"
    output: str = "sr"

    @property
    def color_space(self) -> str:
        return "Y" if self.colors == 1 else "RGB"

    def to_dict(self) -> dict:
        return {"colors": self.colors, "color_space": self.color_space, "pixel_range": self.pixel_range,
                "scale": self.scale, "input": self.input, "output": self.output}

    @classmethod
    def of(cls, config: Config) -> IOSpec:
        return cls(config.colors, config.pixel_range, config.scale)


@dataclass(frozen=True)
class Recipe:
    """A family's training recipe (METHODS.md); batch and patch are overridable."""

    lr: float
    batch: int
    hr_patch: dict[int, int]  # HR patch side per scale, as the papers state it
    milestones: tuple[float, ...] = (0.5, 0.75, 0.9)  # fractions of the run where the lr halves ("steps")
    schedule: str = "cosine"  # learning-rate schedule: "cosine" or the papers' "steps"
    ema: float = 0.999  # decay of the saved exponential moving average of the weights (0: none)
    stages: tuple[str, ...] = ()  # a staged recipe's stages, in order (ClassSR); () = one stage
    stage_lr: tuple[tuple[str, float], ...] = ()  # per-stage learning rates
    # weight of the training graph's regularization term (SMSR: its sparsity loss), which the graph
    # reads from its `regularization` attribute; None: the objective has no such term
    regularization: float | None = None

    def lr_patch(self, scale: int) -> int:
        return self.hr_patch[scale] // scale

    def lr_for(self, stage: str | None) -> float:
        return dict(self.stage_lr).get(stage, self.lr)


class NoTFLiteRoute(EdgeSRError):
    """The family has no Keras twin, so no TFLite export."""


class Family(ABC):
    """One SR design. Subclass, fill in the class attributes and the abstract methods, decorate
    with @register. The hooks below the abstract methods have defaults for a family whose
    deployable is one graph named 'deploy' whose reference is its training graph."""

    name: ClassVar[str]
    summary: ClassVar[str]
    presets: ClassVar[tuple[str, ...]]
    scales: ClassVar[tuple[int, ...]]
    default_variant: ClassVar[str]
    default_scale: ClassVar[int] = 4
    default_pixel_range: ClassVar[float] = 255.0
    recipe: ClassVar[Recipe | None] = None
    export_precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")
    precision_note: ClassVar[str] = ""  # why a precision is missing from export_precisions
    # precisions `verify` checks when none are asked for (None: all), and why not all
    verify_precisions: ClassVar[tuple[str, ...] | None] = None
    verify_note: ClassVar[str | None] = None

    # -- configs --
    @abstractmethod
    def parse_variant(self, variant: str, scale: int, pixel_range: float) -> Config:
        """A variant name ('M4C16') at a scale -> config; UserError for a name it does not know."""

    @abstractmethod
    def config_from_state_dict(self, state_dict: dict, pixel_range: float) -> Config:
        """The architecture a checkpoint's weight shapes describe."""

    @abstractmethod
    def footprint(self, config: Config) -> Footprint:
        """Training-graph parameters and layers from the config alone (nothing built)."""

    def is_deploy_state_dict(self, state_dict: dict) -> bool:
        """True for a checkpoint of the deploy layout (already re-parameterized)."""
        return False

    # -- graphs --
    @abstractmethod
    def training_graph(self, config: Config) -> nn.Module:
        """The training graph, freshly initialised."""

    def training_step_graph(self, train: nn.Module) -> nn.Module:
        """What a training step runs: the training graph, or a faster module over the same parameters
        that computes the same function (so the same gradients; ECBSR: each block's branches folded
        into one conv on every step)."""
        return train

    @abstractmethod
    def deployable(self, train: nn.Module) -> Deployable:
        """Re-parameterize a training graph (eval mode) into its deployable form."""

    def deployable_from_state_dict(self, config: Config, state_dict: dict) -> Deployable:
        """The deployable of a deploy-layout checkpoint."""
        raise UserError(f"{self.name} checkpoints in the deploy layout cannot be loaded: pass the training "
                        "checkpoint (edgesr re-parameterizes it itself)")

    def keras_twin(self, graph: str, spec: GraphSpec, config: Config) -> Any:
        """The deploy graph `graph` rebuilt in Keras (NHWC) with its weights: the TFLite route."""
        raise NoTFLiteRoute(f"{self.name} has no Keras twin, so no TFLite export: use the ONNX format")

    def int8_form(self, graph: str, spec: GraphSpec, config: Config) -> GraphSpec | None:
        """The graph rebuilt so that its int8 file runs entirely in XNNPACK (same math, other ops), or
        None to store it as it is (ECBSR: edgesr/nn/blocked.py)."""
        return None

    # -- host-side glue of a deployable (one graph: none) --
    def glue(self, deployable_params: dict, io: IOSpec, graphs: Mapping[str, Graph]) -> Graph:
        """The deployable's whole-image inference over runtime graphs of its parts."""
        return graphs["deploy"]

    def check_bundle(self, deployable_params: dict, io: IOSpec, graphs: Mapping[str, Graph]) -> None:
        """Refuse (UserError) a bundle whose manifest params do not fit its graphs; one graph: nothing to check."""

    def reference(self, train: nn.Module, deployable: Deployable) -> Graph:
        """What exported files are checked against: the training graph on whole images."""
        from edgesr.runners import TorchGraph

        return TorchGraph(train)

    def reference_model(self, train: nn.Module, deployable: Deployable) -> Callable[[np.ndarray], Modelled]:
        """The rounding-error model of `reference` (edgesr/check.py)."""
        from edgesr.check import graph_model

        return graph_model(train)

    def expectation(self, reference_model: Callable[[np.ndarray], Modelled], deployable: Deployable,
                    precision: str, files: Mapping[str, Any] | None) -> Callable[[np.ndarray], Modelled]:
        """The error model of the deployable stored at `precision` (in `files`, by graph name)."""
        from edgesr.check import expectation

        io = deployable.io
        return expectation(reference_model, deployable.graphs["deploy"].module, precision,
                           files.get("deploy") if files else None, io.colors, io.pixel_range)

    def extra_graphs(self, deployable: Deployable) -> dict[str, nn.Module]:
        """More PyTorch graphs of the deploy math `verify` checks too (SMSR: its sparse path)."""
        return {}

    def cost_notes(self, deployable: Deployable) -> list[str]:
        """Extra cost lines for `export` and `bench` (SMSR: MACs at the measured sparsity)."""
        return []

    # -- shared behaviour --
    def check_scale(self, scale: int) -> None:
        if scale not in self.scales:
            raise UserError(f"{self.name} does not support scale {scale}: choose one of "
                            f"{', '.join(map(str, self.scales))}")

    def config(self, variant: str | None = None, scale: int | None = None,
               pixel_range: float | None = None) -> Config:
        """Config for a variant name and scale, defaults filled in."""
        scale = self.default_scale if scale is None else scale
        self.check_scale(scale)
        return self.parse_variant(self.default_variant if variant is None else variant, scale,
                                  self.default_pixel_range if pixel_range is None else pixel_range)

    def check_fits(self, config: Config) -> None:
        """Refuse a config too big for this machine's memory, before anything is built."""
        check_model_fits(f"{self.name} {config.variant} x{config.scale}", self.footprint(config))


_REGISTRY: dict[str, Family] = {}
_entry_points_loaded = False


def register(cls: type[Family]) -> type[Family]:
    """Class decorator: make a family available by its name."""
    name = cls.name.lower()
    existing = _REGISTRY.get(name)
    if existing is not None and type(existing) is not cls:
        raise EdgeSRError(f"two model families are called '{name}': {type(existing).__module__} and {cls.__module__}")
    _REGISTRY[name] = cls()
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry in metadata.entry_points(group=ENTRY_POINTS):
        try:
            family = entry.load()
        except Exception as exc:  # noqa: BLE001  (a broken plugin must not break edgesr)
            raise EdgeSRError(f"model family plugin '{entry.name}' ({entry.value}) failed to load: {exc}") from None
        if isinstance(family, type) and issubclass(family, Family) and family.name.lower() not in _REGISTRY:
            register(family)


def families() -> list[Family]:
    """Every registered family, in registration order."""
    _load_entry_points()
    return list(_REGISTRY.values())


def get_family(name: str) -> Family:
    """A family by name, with an error listing the known ones."""
    _load_entry_points()
    family = _REGISTRY.get(name.lower())
    if family is None:
        raise UserError(f"unknown model '{name}': choose one of {', '.join(_REGISTRY) or 'none installed'}")
    return family
