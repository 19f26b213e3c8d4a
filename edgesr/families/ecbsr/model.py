"""ECBSR (Zhang et al., ACM MM 2021): variants, checkpoint layouts and footprint. The networks
(training graph with Edge-oriented Convolution Blocks, the plain deploy graph they
re-parameterize into, the online-folded training step) live in edgesr/nn/ecb.py.
Official input convention: Y channel in 0..255 (BasicSR: 0..1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgesr.errors import UserError
from edgesr.family import DataclassConfig
from edgesr.nn.ecb import ECBSR, ECBShape, ECBSRPlain, OnlineFolded, ecb_footprint
from edgesr.resources import Footprint

__all__ = ["ECBSR", "ECBSRConfig", "ECBSRPlain", "OnlineFolded", "config_from_state_dict", "footprint",
           "is_deploy_state_dict", "parse_variant"]

PRESETS = ("M4C8", "M4C16", "M8C16", "M10C32", "M16C64")
SCALES = (2, 3, 4)
_VARIANT = re.compile(r"^M(\d+)C(\d+)(-RGB)?$", re.IGNORECASE)


@dataclass(frozen=True)
class ECBSRConfig(ECBShape, DataclassConfig):
    """Architecture of one ECBSR network: M inner ECBs of C channels, upscale factor, colours."""

    pixel_range: float = 255.0

    @property
    def variant(self) -> str:
        return f"M{self.num_modules}C{self.channels}" + ("-RGB" if self.colors == 3 else "")


def parse_variant(variant: str, scale: int, pixel_range: float = 255.0) -> ECBSRConfig:
    """'M4C16' (Y input) or 'M4C16-RGB' -> config; any M >= 0 and C >= 1 is accepted."""
    match = _VARIANT.match(variant.strip())
    if not match or int(match.group(2)) < 1:
        raise UserError(f"unknown ecbsr variant '{variant}': use M<modules>C<channels>[-RGB], "
                        f"e.g. {', '.join(PRESETS)}")
    colors = 3 if match.group(3) else 1
    return ECBSRConfig(int(match.group(1)), int(match.group(2)), scale, colors, pixel_range=pixel_range)


def is_deploy_state_dict(state_dict: dict) -> bool:
    """True for a plain (already re-parameterized) checkpoint."""
    return not any(".conv1x1_3x3." in key for key in state_dict)


def config_from_state_dict(state_dict: dict, pixel_range: float = 255.0) -> ECBSRConfig:
    """Infer M, C, scale and colours from the conv3x3 weight shapes of either layout."""
    shapes = {}
    for key, value in state_dict.items():
        match = re.match(r"^backbone\.(\d+)\.conv3x3\.weight$", key)
        if match:
            shapes[int(match.group(1))] = tuple(value.shape)
    if len(shapes) < 2 or sorted(shapes) != list(range(len(shapes))):
        raise UserError("checkpoint is not an ECBSR state_dict: no backbone.<i>.conv3x3.weight keys "
                        "(pass «model» for the network it was trained as)")
    first, last = shapes[0], shapes[len(shapes) - 1]
    colors, channels = first[1], first[0]
    scale_sq, rem = divmod(last[0], colors)
    scale = round(scale_sq ** 0.5)
    if colors not in (1, 3) or rem or scale * scale != scale_sq:
        raise UserError(f"checkpoint has an ECBSR layout with {colors} input and {last[0]} output "
                        "channels, which is no supported colour/scale combination")
    return ECBSRConfig(len(shapes) - 2, channels, scale, colors, pixel_range=pixel_range)


def footprint(config: ECBSRConfig) -> Footprint:
    """Parameters and layers of the training graph, from the config alone (nothing is built)."""
    return ecb_footprint(config)
