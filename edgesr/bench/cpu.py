"""What CPU this is: model, SIMD width, FMA and clock (the measured ceiling: edgesr/bench/ceiling.py)."""

from __future__ import annotations

import os
import platform
import re
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class CpuInfo:
    """CPU facts a report records beside its numbers."""

    model: str
    arch: str
    logical_cores: int
    simd: str
    fp32_lanes: int
    fma: bool
    ghz: float
    ghz_source: str

    def to_dict(self) -> dict:
        return asdict(self)


def _simd(flags: set[str], arch: str) -> tuple[str, int, bool]:
    if "avx512f" in flags:
        return "AVX-512", 16, "fma" in flags
    if "avx2" in flags:
        return "AVX2", 8, "fma" in flags
    if "avx" in flags:
        return "AVX", 8, False
    if arch in ("aarch64", "arm64") or "asimd" in flags:
        return "NEON", 4, True
    return "SSE", 4, False


def _frequency(cpuinfo: str) -> tuple[float, str]:
    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if max_freq.is_file():
        return int(max_freq.read_text()) / 1e6, "cpufreq max"
    named = re.search(r"model name\s*:.*@\s*([\d.]+)\s*GHz", cpuinfo)
    if named:
        return float(named.group(1)), "nominal clock in the model name"
    mhz = re.search(r"cpu MHz\s*:\s*([\d.]+)", cpuinfo)
    if mhz:
        return float(mhz.group(1)) / 1000, "current clock from /proc/cpuinfo"
    return 2.0, "unknown clock, 2 GHz assumed"


def detect_cpu(cpuinfo_text: str | None = None) -> CpuInfo:
    """Read /proc/cpuinfo (or the given text) and derive SIMD width, FMA and clock."""
    if cpuinfo_text is None:
        path = Path("/proc/cpuinfo")
        cpuinfo_text = path.read_text() if path.is_file() else ""
    flags_line = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", cpuinfo_text, re.MULTILINE)
    flags = set(flags_line.group(1).split()) if flags_line else set()
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo_text, re.MULTILINE)
    arch = platform.machine()
    simd, lanes, fma = _simd(flags, arch)
    ghz, source = _frequency(cpuinfo_text)
    return CpuInfo(model.group(1).strip() if model else platform.processor() or arch, arch,
                   os.cpu_count() or 1, simd, lanes, fma, ghz, source)
