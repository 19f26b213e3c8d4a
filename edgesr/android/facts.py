"""What phone this is: model, Android version, ABI, SoC, CPU cores and clocks, temperatures."""

from __future__ import annotations

import re

from edgesr.android.adb import Adb
from edgesr.errors import UserError

_PROP = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")
_CORES_CMD = ("for c in /sys/devices/system/cpu/cpu[0-9]*; do "
              "echo \"${c##*/} $(cat $c/cpufreq/cpuinfo_max_freq 2>/dev/null)\"; done")
_THERMAL_CMD = ("for z in /sys/class/thermal/thermal_zone*; do "
                "echo \"$(cat $z/type 2>/dev/null) $(cat $z/temp 2>/dev/null)\"; done")


def parse_getprop(text: str) -> dict[str, str]:
    """`getprop` output ('[key]: [value]' lines) -> dict."""
    props = {}
    for line in text.splitlines():
        match = _PROP.match(line.strip())
        if match:
            props[match.group(1)] = match.group(2)
    return props


def parse_cores(text: str) -> dict[int, int | None]:
    """'cpuN KHZ' lines -> {N: max kHz or None}."""
    cores = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0].startswith("cpu") and parts[0][3:].isdigit():
            cores[int(parts[0][3:])] = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return cores


def parse_thermal(text: str) -> dict[str, float]:
    """'TYPE MILLIDEGREES' lines -> {type: degrees C}."""
    zones = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            value = int(parts[1])
            zones[parts[0]] = value / 1000 if abs(value) > 200 else float(value)
    return zones


def core_mask(cores: dict[int, int | None], choice: str) -> str:
    """Hex taskset mask for 'all', 'big' (every core above the lowest clock), 'little' (the
    lowest-clocked cores) or an explicit hex mask."""
    if choice not in ("all", "big", "little"):
        if not re.fullmatch(r"(0x)?[0-9a-fA-F]+", choice) or int(choice, 16) == 0:
            raise UserError(f"«cores» '{choice}' is not all, big, little or a hex CPU mask such as f0")
        mask = int(choice, 16)
        if mask >> (max(cores) + 1 if cores else 64):
            raise UserError(f"«cores» {choice} names CPUs this device does not have (cpu0-cpu{max(cores)})")
        return format(mask, "x")
    clocks = {c: f for c, f in cores.items() if f}
    if choice == "all" or len(set(clocks.values())) < 2:
        selected = list(cores)
    elif choice == "big":
        selected = [c for c, f in clocks.items() if f > min(clocks.values())]
    else:
        selected = [c for c, f in clocks.items() if f == min(clocks.values())]
    return format(sum(1 << c for c in selected), "x")


def device_facts(adb: Adb, serial: str) -> dict:
    """Everything the report records about the phone."""
    props = parse_getprop(adb.check_shell(serial, "getprop", "reading device properties"))
    cores = parse_cores(adb.check_shell(serial, _CORES_CMD, "reading CPU clocks"))
    return {
        "kind": "adb", "serial": serial, "test_device": props.get("ro.edgesr.test_device"),
        "name": " ".join(filter(None, (props.get("ro.product.manufacturer"), props.get("ro.product.model")))) or serial,
        "android": props.get("ro.build.version.release"), "sdk": props.get("ro.build.version.sdk"),
        "abi": props.get("ro.product.cpu.abi"),
        "soc": " ".join(filter(None, (props.get("ro.soc.manufacturer"), props.get("ro.soc.model"))))
        or props.get("ro.board.platform"),
        "cores": {str(c): f for c, f in sorted(cores.items())},
        "memory_available_bytes": parse_meminfo(adb.shell(serial, "cat /proc/meminfo").stdout),
        "thermal_c": read_thermal(adb, serial),
    }


def parse_meminfo(text: str) -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None when the device hides it)."""
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["MemAvailable:"] and len(parts) > 1 and parts[1].isdigit():
            return int(parts[1]) * 1024
    return None


def read_thermal(adb: Adb, serial: str) -> dict[str, float]:
    """Current temperature of every readable thermal zone (may be empty on locked-down phones)."""
    return parse_thermal(adb.shell(serial, _THERMAL_CMD).stdout)
