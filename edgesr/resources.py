"""Refuse work that cannot fit in memory before anything is allocated: model sizes from each
family's closed-form footprint, image and tensor sizes from their shapes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgesr.errors import UserError

# Export keeps the training graph, the deploy graph, their float64 copies in the error model and
# the converter's own copy alive at once: ~48 bytes per fp32 parameter. A PyTorch module costs a
# few KiB of Python objects whatever its size.
BYTES_PER_PARAM = 48
BYTES_PER_LAYER = 16 * 1024
SHARE = 0.8  # of the memory the kernel reports available


@dataclass(frozen=True)
class Footprint:
    """Parameters of a training graph and the number of layers (modules) that hold them."""

    params: int
    layers: int

    @property
    def bytes(self) -> int:
        return self.params * BYTES_PER_PARAM + self.layers * BYTES_PER_LAYER


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (or a generous guess off Linux)."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 8 << 30


def gib(n: float) -> str:
    return f"{n / 2 ** 30:.1f} GiB" if n >= 2 ** 28 else f"{n / 2 ** 20:.0f} MiB"


def check_fits(what: str, need: int, advice: str) -> None:
    """A one-line UserError if `need` bytes exceed the share of available memory edgesr may use."""
    budget = int(available_memory_bytes() * SHARE)
    if need > budget:
        raise UserError(f"{what} needs about {gib(need)} of memory but {gib(budget)} is available: {advice}")


def check_model_fits(label: str, footprint: Footprint) -> None:
    """Refuse a variant too big to build, before any of it is built."""
    check_fits(f"{label} ({footprint.params:,} parameters in {footprint.layers:,} layers)", footprint.bytes,
               "choose a smaller «variant»")
