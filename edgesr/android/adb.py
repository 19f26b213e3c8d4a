"""A thin client over the real `adb` binary: devices, selection, shell with exit codes, push."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edgesr.errors import ToolError, UserError

_DONE = "__edgesr_done__"
_LOST = ("not found", "offline", "closed", "no devices", "device unauthorized", "protocol fault",
         "connection reset", "broken pipe")


@dataclass(frozen=True)
class AdbDevice:
    """One line of `adb devices -l`."""

    serial: str
    state: str
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ShellResult:
    """Output and exit code of one `adb shell` command (exit codes need shell_v2, adb >= 7.0)."""

    stdout: str
    stderr: str
    exit_code: int


def _last_line(result: subprocess.CompletedProcess) -> str:
    """The last non-empty line adb printed, or its exit code."""
    lines = [line.strip() for line in (result.stderr + "\n" + result.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {result.returncode}, no output"


def parse_devices(text: str) -> list[AdbDevice]:
    """Parse `adb devices -l` output."""
    devices = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("List of devices", "*")):
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        details = dict(p.split(":", 1) for p in parts[2:] if ":" in p)
        devices.append(AdbDevice(parts[0], parts[1], details))
    return devices


def server_args(server: str) -> tuple[str, ...]:
    """`adb -H HOST -P PORT` for a server given as HOST:PORT (an adb server on another machine)."""
    host, _, port = server.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"adb server '{server}' is not HOST:PORT (e.g. 192.168.1.20:5037)")
    return "-H", host, "-P", port


def check_ready(device: AdbDevice) -> None:
    """A device adb can run commands on; a clear error for every other state."""
    if device.state == "unauthorized":
        raise UserError(f"device {device.serial} is unauthorized: unlock the phone and accept the "
                        "'Allow USB debugging' RSA key prompt, then retry")
    if device.state == "offline":
        raise UserError(f"device {device.serial} is offline: reconnect it (replug USB or "
                        "'adb reconnect') and retry")
    if device.state != "device":
        raise UserError(f"device {device.serial} is in state '{device.state}', not 'device'")


class DeviceLost(ToolError):
    """The device disconnected: nothing more can run on it."""


class Adb:
    """Runs the adb client; every failure becomes a one-line UserError or ToolError."""

    def __init__(self, adb_path: str | None = None, server_port: int | None = None, timeout: float = 120,
                 server: str | None = None):
        found = adb_path if adb_path and Path(adb_path).is_file() else shutil.which(adb_path or "adb")
        if not found:
            raise UserError(f"adb not found{' at ' + adb_path if adb_path else ''}: install Android platform-tools "
                            "(Debian/Ubuntu: apt install adb) or pass its path as «adb»")
        self.path = found
        self.env = dict(os.environ)
        if server_port:
            self.env["ANDROID_ADB_SERVER_PORT"] = str(server_port)
        self.server = server
        self.server_args = server_args(server) if server else ()
        self.timeout = timeout

    def run(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run `adb ARGS`, returning the completed process (no exit-code check)."""
        try:
            return subprocess.run([self.path, *self.server_args, *args], capture_output=True, text=True, env=self.env,
                                  timeout=timeout or self.timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ToolError(f"adb {' '.join(args[:3])} did not finish within {timeout or self.timeout:.0f} s") from None

    def devices(self) -> list[AdbDevice]:
        """Every device the adb server knows, with its state (device/offline/unauthorized/...)."""
        result = self.run("devices", "-l", timeout=60)
        if result.returncode != 0:
            where = f" on {self.server}" if self.server else ""
            raise ToolError(f"'{self.path} devices' failed{where}: {_last_line(result)}: is the adb server running "
                            "and reachable ('adb start-server')?")
        return parse_devices(result.stdout)

    def _lost(self, serial: str, what: str, result: subprocess.CompletedProcess) -> ToolError | None:
        """A ToolError if adb itself (not the remote command) failed because the device went away."""
        message = (result.stderr or result.stdout).strip()
        last = message.splitlines()[-1] if message else ""
        if result.returncode != 0 and last.startswith(("error:", "adb: error")) and \
                any(k in last.lower() for k in _LOST):
            return DeviceLost(f"device {serial} disconnected during {what}: {last}")
        return None

    def shell(self, serial: str, command: str, timeout: float | None = None) -> ShellResult:
        """Run a shell command on the device; a vanished device is a ToolError. adb (29.x) exits 0
        with truncated output when the device disappears mid-command, so every command ends
        with a sentinel line: no sentinel means the device went away."""
        wrapped = f"{command}; rc=$?; printf '\\n{_DONE}\\n'; exit $rc"
        result = self.run("-s", serial, "shell", wrapped, timeout=timeout)
        what = f"'{command[:60]}'"
        lost = self._lost(serial, what, result)
        if lost:
            raise lost
        tail = f"\n{_DONE}\n"
        if not result.stdout.endswith(tail):
            raise DeviceLost(f"device {serial} disconnected during {what}: the command's output was cut off")
        return ShellResult(result.stdout[: -len(tail)], result.stderr, result.returncode)

    def check_shell(self, serial: str, command: str, what: str, timeout: float | None = None) -> str:
        """shell() that fails with a one-line error on a non-zero exit; returns stdout."""
        result = self.shell(serial, command, timeout)
        if result.exit_code != 0:
            lines = [line.strip() for line in (result.stderr + "\n" + result.stdout).splitlines() if line.strip()]
            raise ToolError(f"{what} failed on {serial}: {lines[-1] if lines else f'exit code {result.exit_code}'}")
        return result.stdout

    def push(self, serial: str, local: Path, remote: str) -> None:
        """adb push; a failed push is a one-line ToolError naming the file."""
        result = self.run("-s", serial, "push", str(local), remote)
        lost = self._lost(serial, f"push of {Path(local).name}", result)
        if lost:
            raise lost
        if result.returncode != 0:
            lines = (result.stderr + "\n" + result.stdout).strip().splitlines()
            detail = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "unknown error")
            raise ToolError(f"pushing {Path(local).name} to {serial}:{remote} failed: {detail.strip()}")

    def pull(self, serial: str, remote: str, local: Path) -> None:
        """adb pull; a failed pull is a one-line ToolError naming the file."""
        result = self.run("-s", serial, "pull", remote, str(local))
        lost = self._lost(serial, f"pull of {remote}", result)
        if lost:
            raise lost
        if result.returncode != 0 or not Path(local).is_file():
            raise ToolError(f"pulling {serial}:{remote} failed: {_last_line(result)}")
