"""The loopback adb device, driven through the REAL adb client and server on a private port."""

from __future__ import annotations

import hashlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from loopback.loopback_device import ADB_BINARY, AdbServer, LoopbackDevice

pytestmark = pytest.mark.skipif(not Path(ADB_BINARY).is_file(), reason="needs the adb client (apt install adb)")

MODEL = "Loopback Pixel"


@pytest.fixture
def server(request) -> AdbServer:
    adb_server = AdbServer()
    assert adb_server.port != 5037
    request.addfinalizer(adb_server.stop)
    adb_server.start()
    return adb_server


def _device(request, tmp_path: Path, mode: str = "device") -> LoopbackDevice:
    device = LoopbackDevice(tmp_path / "phone", props={"ro.product.model": MODEL}, mode=mode)
    request.addfinalizer(device.stop)
    device.start()
    return device


@pytest.fixture
def device(request, tmp_path: Path) -> LoopbackDevice:
    return _device(request, tmp_path)


@pytest.fixture
def phone(server: AdbServer, device: LoopbackDevice) -> tuple[AdbServer, LoopbackDevice]:
    server.connect(device)
    return server, device


def shell(server: AdbServer, device: LoopbackDevice, command: str, **kwargs) -> subprocess.CompletedProcess:
    return server.adb("-s", device.serial, "shell", command, check=False, **kwargs)


def popen_shell(request, server: AdbServer, device: LoopbackDevice, command: str) -> subprocess.Popen:
    process = subprocess.Popen([ADB_BINARY, "-s", device.serial, "shell", command], env=server.env, text=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def reap() -> None:
        if process.poll() is None:
            process.kill()
        process.communicate()

    request.addfinalizer(reap)
    return process


def readline(process: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, f"no output within {timeout} s"
    return process.stdout.readline()


def test_path_rewriting(tmp_path: Path) -> None:
    device = LoopbackDevice(tmp_path)
    root = str(device.root)
    assert device.rewrite_command("bm --graph=/data/local/tmp/m.tflite --x=1") == \
        f"bm --graph={root}/data/local/tmp/m.tflite --x=1"
    assert device.rewrite_command("cat '/sdcard/a b' /proc/cpuinfo /proc/meminfo >/data/o") == \
        f"cat '{root}/sdcard/a b' {root}/proc/cpuinfo /proc/meminfo >{root}/data/o"
    assert device.rewrite_command("PATH=/system/bin:/usr/bin ls /sys /usr/data/x /bin/sh $D/data/x") == \
        f"PATH={root}/system/bin:/usr/bin ls {root}/sys /usr/data/x /bin/sh $D/data/x"
    assert device.device_path("/data/local/tmp/x") == Path(root + "/data/local/tmp/x")
    assert device.device_path("/tmp/x") == Path("/tmp/x")


def test_devices_lists_model_and_getprop(phone) -> None:
    server, device = phone
    lines = [line.split() for line in server.adb("devices", "-l").stdout.splitlines()]
    entry = next(parts for parts in lines if parts and parts[0] == device.serial)
    assert entry[1] == "device"
    assert "model:Loopback_Pixel" in entry and "product:shiba" in entry and "device:shiba" in entry
    assert shell(server, device, "getprop ro.product.model").stdout == MODEL + "\n"
    listing = shell(server, device, "getprop").stdout
    assert f"[ro.product.model]: [{MODEL}]" in listing.splitlines()
    assert "[ro.build.version.sdk]: [34]" in listing.splitlines()
    assert shell(server, device, "getprop ro.no.such.prop fallback").stdout == "fallback\n"


def test_device_facts_through_project_harness(phone) -> None:
    from edgesr.android.adb import Adb
    from edgesr.android.facts import device_facts

    server, device = phone
    facts = device_facts(Adb(ADB_BINARY, server_port=server.port), device.serial)
    assert facts["name"] == f"Google {MODEL}" and facts["android"] == "14" and facts["abi"] == "arm64-v8a"
    assert facts["cores"] == {**{str(c): 1800000 for c in range(4)}, **{str(c): 2400000 for c in range(4, 7)},
                              "7": 3000000}
    assert facts["thermal_c"] == {"cpu-0": 41.0, "battery": 30.5}
    assert shell(server, device, "grep -c ^processor /proc/cpuinfo; cat /sys/devices/system/cpu/possible").stdout \
        == "8\n0-7\n"
    pinned = shell(server, device, "taskset f0 echo pinned")  # cpu4-7 may not exist on this host
    assert (pinned.returncode, pinned.stdout) == (0, "pinned\n")


def test_shell_exit_codes_and_separate_streams(phone) -> None:
    server, device = phone
    assert shell(server, device, "exit 3").returncode == 3
    result = shell(server, device, "echo out; echo err >&2")
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\n", "err\n")
    result = shell(server, device, "cat; echo done", input="to stdin\n")  # stdin reaches the command
    assert result.stdout == "to stdin\ndone\n"
    big = shell(server, device, "head -c 3000000 /dev/zero | tr '\\000' x")  # many WRTEs, flow control
    assert big.stdout == "x" * 3000000
    refused = server.adb("-s", device.serial, "reboot", check=False)  # a service the device lacks
    assert refused.returncode != 0 and "closed" in refused.stderr


def test_push_pull_round_trip(phone, tmp_path: Path) -> None:
    server, device = phone
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(300 * 1024))
    script = tmp_path / "x.sh"
    script.write_text("#!/bin/sh\necho \"script ran with $1\"\n")
    script.chmod(0o755)
    pushed = server.adb("-s", device.serial, "push", str(blob), "/data/local/tmp/blob.bin", check=False)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    server.adb("-s", device.serial, "push", str(script), "/data/local/tmp/")
    back = tmp_path / "back.bin"
    server.adb("-s", device.serial, "pull", "/data/local/tmp/blob.bin", str(back))
    assert back.read_bytes() == blob.read_bytes()
    assert (device.root / "data/local/tmp/x.sh").stat().st_mode & 0o777 == 0o755
    assert shell(server, device, "/data/local/tmp/x.sh arg").stdout == "script ran with arg\n"
    assert shell(server, device, "ls /data/local/tmp").stdout.split() == ["blob.bin", "x.sh"]
    digest = shell(server, device, "sha256sum /data/local/tmp/blob.bin").stdout.split()[0]
    assert digest == hashlib.sha256(blob.read_bytes()).hexdigest()
    missing = server.adb("-s", device.serial, "pull", "/data/local/tmp/nope", str(tmp_path), check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr + missing.stdout


def test_long_command_streams_output(request, phone) -> None:
    server, device = phone
    start = time.monotonic()
    process = popen_shell(request, server, device, "echo a; sleep 1; echo b")
    assert readline(process, 5) == "a\n"
    assert time.monotonic() - start < 0.9  # "a" arrived before the command finished
    assert readline(process, 5) == "b\n"
    assert process.wait(5) == 0
    assert time.monotonic() - start >= 1.0


def test_stop_during_command_unplugs(request, phone) -> None:
    server, device = phone
    process = popen_shell(request, server, device, "echo started; sleep 29.75; echo finished")
    assert readline(process, 5) == "started\n"
    start = time.monotonic()
    device.stop()
    out, err = process.communicate(timeout=10)
    assert time.monotonic() - start < 10
    assert "finished" not in out
    # adb 29.0.6 exits 0 without a message here: the shell_v2 client defaults the exit code to 0
    # when the stream ends without an exit packet, so callers cannot rely on the exit code alone.
    assert process.returncode in (0, 1, 255)
    assert server.state(device.serial) in (None, "offline")  # the server retries: "offline" for a while
    after = shell(server, device, "true")
    assert after.returncode == 1 and ("offline" in after.stderr or "not found" in after.stderr)
    deadline = time.monotonic() + 3
    while subprocess.run(["pgrep", "-f", "sleep 29.75"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "the device left its command running"
        time.sleep(0.05)


def test_fail_pushes(phone, tmp_path: Path) -> None:
    server, device = phone
    model = tmp_path / "m.tflite"
    model.write_bytes(os.urandom(100 * 1024))
    device.fail_pushes()
    result = server.adb("-s", device.serial, "push", str(model), "/data/local/tmp/m.tflite", check=False)
    assert result.returncode != 0
    assert "No space left on device" in result.stdout + result.stderr
    assert not (device.root / "data/local/tmp/m.tflite").exists()
    device.fail_pushes("Read-only file system")
    result = server.adb("-s", device.serial, "push", str(model), "/data/local/tmp/m.tflite", check=False)
    assert result.returncode != 0 and "Read-only file system" in result.stdout + result.stderr
    assert shell(server, device, "echo still usable").stdout == "still usable\n"


@pytest.mark.parametrize("mode", ["unauthorized", "offline"])
def test_modes(request, tmp_path: Path, server: AdbServer, mode: str) -> None:
    device = _device(request, tmp_path, mode=mode)
    server.connect(device)
    assert server.state(device.serial) == mode
    result = shell(server, device, "true")
    assert result.returncode == 1 and mode in result.stderr


def test_main_runs_a_device_until_interrupted(server: AdbServer, tmp_path: Path, request) -> None:
    process = subprocess.Popen([sys.executable, "-m", "loopback.loopback_device", "--root", str(tmp_path / "r"),
                                "--prop", "ro.product.model=CLI Phone"],
                               cwd=Path(__file__).resolve().parent, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)

    def reap() -> None:
        if process.poll() is None:
            process.kill()
        process.communicate()

    request.addfinalizer(reap)
    serial = readline(process, 10).strip()
    assert serial.startswith("127.0.0.1:")
    port = int(serial.rsplit(":", 1)[1])
    assert not 5555 <= port <= 5585
    connected = server.adb("connect", serial)
    assert f"connected to {serial}" in connected.stdout
    assert server.adb("-s", serial, "shell", "getprop ro.product.model").stdout == "CLI Phone\n"
    process.send_signal(signal.SIGINT)
    assert process.wait(10) == 0
