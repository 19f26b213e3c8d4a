"""A loopback Android "device" that a real adb server connects to over TCP (`adb connect`).

It speaks the adb transport protocol (CNXN/AUTH/OPEN/OKAY/WRTE/CLSE, AOSP `adb/protocol.txt`)
and implements the services an adb-based benchmark harness needs: `shell` (shell_v2 with exit
codes and separate stdout/stderr, legacy `shell:` and `exec:`) and `sync:` (v1 STAT/LIST/SEND/
RECV/QUIT, so `adb push`/`adb pull`/`adb ls` work). Commands really run, as `/bin/sh -c CMD` on
this host, with cwd set to the device root; device paths (`/data/...`, `/sdcard/...`,
`/sys/...`, `/system/...`, `/proc/cpuinfo`) in the command line and in sync requests are
rewritten textually into the root, which is populated with a plausible phone (getprop, cpuinfo,
cpufreq, thermal zones, /data/local/tmp, and a `taskset` that runs unpinned when the mask names
CPUs this host lacks).

Only for tests: there is no authentication, no sandboxing, and paths inside pushed scripts are
not rewritten (only the command line is). Use with a private adb server (`AdbServer`), never
the user's server on port 5037.

    with AdbServer() as server, LoopbackDevice(tmp_path) as device:
        server.connect(device)
        server.adb("-s", device.serial, "shell", "getprop ro.product.model")
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

ADB_BINARY = "/usr/bin/adb"

# --- adb transport --------------------------------------------------------------------------
A_SYNC = 0x434E5953
A_CNXN = 0x4E584E43
A_AUTH = 0x48545541
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
A_STLS = 0x534C5453
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
_HEADER = struct.Struct("<6I")
_COMMAND_NAMES = {A_SYNC: "SYNC", A_CNXN: "CNXN", A_AUTH: "AUTH", A_OPEN: "OPEN", A_OKAY: "OKAY",
                  A_CLSE: "CLSE", A_WRTE: "WRTE", A_STLS: "STLS"}

# --- shell protocol (shell_v2) --------------------------------------------------------------
SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN, SHELL_WINDOW_SIZE = range(6)
_SHELL_HEADER = struct.Struct("<BI")

# --- sync protocol (v1) ---------------------------------------------------------------------
SYNC_DATA_MAX = 64 * 1024
_SYNC_REQUEST = struct.Struct("<4sI")
_SYNC_STAT = struct.Struct("<4sIII")
_SYNC_DENT = struct.Struct("<4sIIII")

FEATURES = ("shell_v2", "cmd")
MODES = ("device", "unauthorized", "offline")
EMULATOR_PORTS = range(5555, 5586)  # the adb server probes these for emulators

DEFAULT_PROPS: dict[str, str] = {
    "ro.product.model": "Pixel 8",
    "ro.product.manufacturer": "Google",
    "ro.product.name": "shiba",
    "ro.product.device": "shiba",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.soc.manufacturer": "Google",
    "ro.soc.model": "Tensor G3",
    "ro.board.platform": "zuma",
    "ro.edgesr.test_device": "loopback",  # edgesr's loopback daemon; no phone has this property
}
CPU_MAX_FREQ_KHZ = (1800000,) * 4 + (2400000,) * 3 + (3000000,)
THERMAL_ZONES = (("cpu-0", 41000), ("battery", 30500))

_DEVICE_PREFIXES = ("/data", "/sdcard", "/sys", "/system")
# A device path token: not preceded by a path/word character, so `/usr/data/x` and `$X/data`
# stay as they are, while `--graph=/data/x`, `'/data/x'`, `>/sdcard/x` and `a:/system/bin` map.
_DEVICE_PATH = re.compile(r"(?<![\w.~/$}\-])(?:/(?:data|sdcard|sys|system)(?=/|$|[\s'\";|&()<>`,:])"
                          r"|/proc/cpuinfo(?![\w.\-]))")


def _packet(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    checksum = sum(data) & 0xFFFFFFFF
    return _HEADER.pack(command, arg0, arg1, len(data), checksum, command ^ 0xFFFFFFFF) + data


def _free_port(avoid: range = EMULATOR_PORTS) -> int:
    """A currently free TCP port on 127.0.0.1 outside `avoid`."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in avoid:
            return port


class _StreamClosed(Exception):
    """The stream (or its whole connection) was closed."""


class _Stream:
    """One adb stream: flow-controlled writes (one WRTE in flight) and acknowledged reads.

    The connection's reader thread only calls `_on_okay`, `_on_data` and `_on_close`, none of
    which block; the service thread calls `write`/`read*`, which may block.
    """

    def __init__(self, conn: _Connection, local_id: int, remote_id: int) -> None:
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self._cond = threading.Condition()
        self._can_send = True
        self._closed = False
        self._write_lock = threading.Lock()
        self._inbound: queue.Queue[bytes | None] = queue.Queue()
        self._buffer = bytearray()
        self.on_peer_close: list[Callable[[], None]] = []

    @property
    def closed(self) -> bool:
        return self._closed

    # reader-thread side
    def _on_okay(self) -> None:
        with self._cond:
            self._can_send = True
            self._cond.notify_all()

    def _on_data(self, data: bytes) -> None:
        if not self._closed:
            self._inbound.put(data)

    def _on_close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._inbound.put(None)
        for callback in list(self.on_peer_close):
            try:
                callback()
            except Exception:  # pragma: no cover - callbacks must not kill the reader
                log.exception("stream close callback failed")

    # service-thread side
    def write(self, data: bytes) -> None:
        """Send `data` as WRTE packets, each after the peer acknowledged the previous one."""
        view = memoryview(data)
        with self._write_lock:
            while True:
                chunk = bytes(view[: self.conn.max_payload])
                view = view[len(chunk):]
                with self._cond:
                    while not self._can_send and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        raise _StreamClosed()
                    self._can_send = False
                self.conn.send(A_WRTE, self.local_id, self.remote_id, chunk)
                if not view:
                    return

    def drain(self, timeout: float) -> None:
        """Wait (bounded) until the last WRTE was acknowledged."""
        with self._write_lock, self._cond:
            self._cond.wait_for(lambda: self._can_send or self._closed, timeout)

    def read_chunk(self) -> bytes | None:
        """The next WRTE payload from the peer (acknowledged now), or None once closed."""
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            return data
        data = self._inbound.get()
        if data is None:
            self._inbound.put(None)  # stay closed for later readers
            return None
        if not self._closed:
            self.conn.send(A_OKAY, self.local_id, self.remote_id)
        return data

    def read_exact(self, size: int) -> bytes:
        """Exactly `size` bytes of the peer's byte stream; _StreamClosed if it ends first."""
        while len(self._buffer) < size:
            data = self._inbound.get()
            if data is None:
                self._inbound.put(None)
                raise _StreamClosed()
            if not self._closed:
                self.conn.send(A_OKAY, self.local_id, self.remote_id)
            self._buffer += data
        result = bytes(self._buffer[:size])
        del self._buffer[:size]
        return result

    def close(self) -> None:
        """Close from our side: CLSE to the peer (once)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._inbound.put(None)
        self.conn.forget(self)
        try:
            self.conn.send(A_CLSE, self.local_id, self.remote_id)
        except OSError:
            pass


class _Connection:
    """One TCP connection from the adb server: a reader thread and the streams it carries."""

    def __init__(self, device: LoopbackDevice, sock: socket.socket, peer: str) -> None:
        self.device = device
        self.sock = sock
        self.peer = peer
        self.max_payload = MAX_PAYLOAD
        self._send_lock = threading.Lock()
        self._streams: dict[int, _Stream] = {}
        self._streams_lock = threading.Lock()
        self._next_id = 1
        self._closed = False
        self.thread = threading.Thread(target=self._run, name=f"adb-loopback-conn-{peer}", daemon=True)

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        packet = _packet(command, arg0, arg1, data)
        with self._send_lock:
            if self._closed:
                raise OSError("connection closed")
            self.sock.sendall(packet)

    def forget(self, stream: _Stream) -> None:
        with self._streams_lock:
            self._streams.pop(stream.local_id, None)

    def close(self) -> None:
        """Drop the TCP connection at once (like pulling the cable) and close every stream."""
        if self._closed:
            return
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # first: wakes a recv() or a stuck sendall()
        except OSError:
            pass
        with self._send_lock:
            if self._closed:
                return
            self._closed = True
            self.sock.close()
        with self._streams_lock:
            streams = list(self._streams.values())
            self._streams.clear()
        for stream in streams:
            stream._on_close()

    def _recv_exact(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("peer closed the connection")
            data += chunk
        return bytes(data)

    def _run(self) -> None:
        try:
            while True:
                command, arg0, arg1, length, _check, magic = _HEADER.unpack(self._recv_exact(_HEADER.size))
                if magic != command ^ 0xFFFFFFFF:
                    raise ConnectionError(f"bad packet magic {magic:#x} for command {command:#x}")
                data = self._recv_exact(length) if length else b""
                log.debug("%s -> %s %#x %#x %d bytes", self.peer, _COMMAND_NAMES.get(command, hex(command)),
                          arg0, arg1, length)
                self._handle(command, arg0, arg1, data)
        except (OSError, ConnectionError, struct.error) as error:
            if not self._closed:
                log.debug("connection %s ended: %s", self.peer, error)
        finally:
            self.close()
            self.device._forget(self)

    def _handle(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        mode = self.device.mode
        if mode == "offline":
            return  # never answer: the server keeps the transport offline
        if command == A_CNXN:
            self.max_payload = max(1024, min(MAX_PAYLOAD, arg1 or MAX_PAYLOAD))
            log.debug("server banner %r", data.rstrip(b"\0"))
            if mode == "unauthorized":
                self.send(A_AUTH, AUTH_TOKEN, 0, secrets.token_bytes(20))
            else:
                self.send(A_CNXN, min(arg0, A_VERSION) or A_VERSION, MAX_PAYLOAD, self.device.banner())
        elif command == A_AUTH:
            if arg0 == AUTH_SIGNATURE:
                self.send(A_AUTH, AUTH_TOKEN, 0, secrets.token_bytes(20))  # reject: try the next key
            # AUTH_RSAPUBLICKEY: a phone would show the "Allow USB debugging?" prompt; nobody accepts.
        elif mode == "unauthorized":
            return
        elif command == A_OPEN:
            self._open(arg0, data.rstrip(b"\0").decode("utf-8", "replace"))
        elif command == A_OKAY:
            stream = self._streams.get(arg1)
            if stream is not None:
                stream._on_okay()
        elif command == A_WRTE:
            stream = self._streams.get(arg1)
            if stream is not None:  # data for a stream we already closed is dropped, as adbd does
                stream._on_data(data)
        elif command == A_CLSE:
            with self._streams_lock:
                stream = self._streams.pop(arg1, None)
            if stream is not None:
                stream._on_close()
        else:
            log.debug("ignoring command %#x", command)

    def _open(self, remote_id: int, service: str) -> None:
        handler = self.device._service_handler(service)
        if handler is None or remote_id == 0:
            log.info("refusing unknown service %r", service)
            self.send(A_CLSE, 0, remote_id)
            return
        with self._streams_lock:
            local_id = self._next_id
            self._next_id += 1
            stream = _Stream(self, local_id, remote_id)
            self._streams[local_id] = stream
        self.send(A_OKAY, local_id, remote_id)
        log.debug("opened %r as stream %d", service, local_id)
        threading.Thread(target=self._serve, args=(handler, stream, service),
                         name=f"adb-loopback-{service.split(':')[0]}-{local_id}", daemon=True).start()

    def _serve(self, handler: Callable[[_Stream], None], stream: _Stream, service: str) -> None:
        try:
            handler(stream)
        except (_StreamClosed, OSError) as error:
            log.debug("service %r ended: %s", service, error)
        except Exception:
            log.exception("service %r failed", service)
        finally:
            stream.close()


class LoopbackDevice:
    """A fake phone listening on 127.0.0.1 for a real adb server (`adb connect 127.0.0.1:PORT`).

    `root` is the device filesystem; `props` override `DEFAULT_PROPS` (and may add keys);
    `mode` is "device", "unauthorized" (every key is rejected) or "offline" (CNXN never answered).
    """

    def __init__(self, root: Path, port: int = 0, *, props: dict[str, str] | None = None,
                 mode: str = "device") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.root = Path(root).absolute()
        self.mode = mode
        self.props = {**DEFAULT_PROPS, **(props or {})}
        self._requested_port = port
        self.port: int = port
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._connections: set[_Connection] = set()
        self._processes: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._running = False
        self._push_failure: str | None = None

    @property
    def serial(self) -> str:
        """The serial adb shows for this device: "127.0.0.1:<port>"."""
        return f"127.0.0.1:{self.port}"

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Populate the root, bind the port and start accepting connections."""
        if self._running:
            return
        self._populate()
        if self.port:
            self._requested_port = self.port  # a restart after stop() comes back on the same port
        self._listener = self._bind()
        self.port = self._listener.getsockname()[1]
        self._running = True
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"adb-loopback-accept-{self.port}",
                                          daemon=True)
        self._acceptor.start()
        log.info("loopback device %s (%s) serving %s", self.serial, self.mode, self.root)

    def stop(self) -> None:
        """Vanish at once: close the listener and every connection, kill running commands."""
        self._running = False
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
            processes = list(self._processes)
        for conn in connections:
            conn.close()
        for process in processes:
            _kill_group(process, signal.SIGKILL)
        threads = [c.thread for c in connections] + ([self._acceptor] if self._acceptor else [])
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2)
        self._acceptor = None

    def fail_pushes(self, message: str = "No space left on device") -> None:
        """Make every later sync SEND (adb push) answer FAIL with `message`."""
        self._push_failure = message

    def __enter__(self) -> LoopbackDevice:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def banner(self) -> bytes:
        """The CNXN banner: product name/model/device and the features we implement."""
        props = self.props
        return (f"device::ro.product.name={props['ro.product.name']};ro.product.model={props['ro.product.model']};"
                f"ro.product.device={props['ro.product.device']};features={','.join(FEATURES)}").encode()

    def _bind(self) -> socket.socket:
        for _ in range(100):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind(("127.0.0.1", self._requested_port))
            except OSError:
                listener.close()
                raise
            if self._requested_port or listener.getsockname()[1] not in EMULATOR_PORTS:
                listener.listen(16)
                return listener
            listener.close()
        raise OSError("could not find a free port outside 5555-5585")

    def _accept_loop(self) -> None:
        listener = self._listener
        while self._running and listener is not None:
            try:
                sock, address = listener.accept()
            except OSError:
                break
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, sock, f"{address[0]}:{address[1]}")
            with self._lock:
                if not self._running:
                    sock.close()
                    break
                self._connections.add(conn)
            log.debug("connection from %s", conn.peer)
            conn.thread.start()

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    # --- filesystem ----------------------------------------------------------------------------
    def device_path(self, path: str) -> Path:
        """Host path for a device path: device prefixes map into the root, others stay as they are."""
        if not path.startswith("/"):
            return self.root / path
        if _DEVICE_PATH.match(path):
            return Path(str(self.root) + path)
        return Path(path)

    def rewrite_command(self, command: str) -> str:
        """The command line with every device path token mapped into the root."""
        return _DEVICE_PATH.sub(lambda m: str(self.root) + m.group(0), command)

    def _populate(self) -> None:
        root = self.root
        for sub in ("data/local/tmp", "sdcard", "system/bin", "proc"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "data/local/tmp").chmod(0o777)
        getprop = root / "system/bin/getprop"
        getprop.write_text(_getprop_script(self.props))
        getprop.chmod(0o755)
        taskset = root / "system/bin/taskset"
        taskset.write_text(_taskset_script())
        taskset.chmod(0o755)
        cpus = len(CPU_MAX_FREQ_KHZ)
        (root / "proc/cpuinfo").write_text(_cpuinfo(cpus, self.props))
        cpu_dir = root / "sys/devices/system/cpu"
        for index, khz in enumerate(CPU_MAX_FREQ_KHZ):
            freq = cpu_dir / f"cpu{index}/cpufreq"
            freq.mkdir(parents=True, exist_ok=True)
            (freq / "cpuinfo_max_freq").write_text(f"{khz}\n")
            (freq / "cpuinfo_min_freq").write_text("300000\n")
        for name in ("possible", "present", "online"):
            (cpu_dir / name).write_text(f"0-{cpus - 1}\n")
        for index, (kind, milli_c) in enumerate(THERMAL_ZONES):
            zone = root / f"sys/class/thermal/thermal_zone{index}"
            zone.mkdir(parents=True, exist_ok=True)
            (zone / "type").write_text(f"{kind}\n")
            (zone / "temp").write_text(f"{milli_c}\n")

    # --- services ------------------------------------------------------------------------------
    def _service_handler(self, service: str) -> Callable[[_Stream], None] | None:
        if service == "sync:":
            return self._sync
        if service.startswith("shell"):
            options, sep, command = service[len("shell"):].partition(":")
            if not sep or (options and not options.startswith(",")):
                return None
            flags = set(options.split(",")[1:])
            return lambda stream: self._shell(stream, command, v2="v2" in flags)
        if service.startswith("exec:"):
            command = service[len("exec:"):]
            return lambda stream: self._shell(stream, command, v2=False)
        return None

    def _spawn(self, command: str, merge_stderr: bool) -> subprocess.Popen:
        env = dict(os.environ)
        env.pop("ANDROID_ADB_SERVER_PORT", None)
        env["PATH"] = os.pathsep.join([str(self.root / "system/bin"), str(Path(sys.executable).parent),
                                       "/usr/bin", "/bin"])
        env["ANDROID_DATA"] = str(self.root / "data")
        env["EXTERNAL_STORAGE"] = str(self.root / "sdcard")
        process = subprocess.Popen(["/bin/sh", "-c", self.rewrite_command(command)], cwd=self.root, env=env,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                                   start_new_session=True, bufsize=0)
        with self._lock:
            if not self._running:
                _kill_group(process, signal.SIGKILL)
            self._processes.add(process)
        return process

    def _shell(self, stream: _Stream, command: str, v2: bool) -> None:
        """shell_v2 (framed stdout/stderr, exit code) or raw (legacy `shell:`/`exec:`)."""

        def packet(kind: int, payload: bytes) -> bytes:
            return _SHELL_HEADER.pack(kind, len(payload)) + payload

        if not command.strip():
            message = b"loopback device: interactive shells are not supported; pass a command\n"
            if v2:
                stream.write(packet(SHELL_STDERR, message))
                stream.write(packet(SHELL_EXIT, bytes([1])))
            else:
                stream.write(message)
            stream.drain(5)
            return
        process = self._spawn(command, merge_stderr=not v2)
        if v2:
            # Like adbd with the shell protocol: the client went away (Ctrl-C), hang up the command.
            stream.on_peer_close.append(lambda: _kill_group(process, signal.SIGHUP, then_kill_after=1.0))
            if stream.closed:
                _kill_group(process, signal.SIGKILL)
        # Raw (legacy shell:/exec:): the command gets the queued stdin then EOF, and SIGPIPE when it
        # next writes, like a child whose stdio is the closed socket (`adb exec-in` relies on it).

        def pump_out(pipe: IO[bytes], kind: int) -> None:
            try:
                while True:
                    data = os.read(pipe.fileno(), 64 * 1024)
                    if not data:
                        return
                    stream.write(packet(kind, data) if v2 else data)
            except (_StreamClosed, OSError):
                pass
            finally:
                pipe.close()

        def pump_in() -> None:
            try:
                if v2:
                    while True:
                        kind, length = _SHELL_HEADER.unpack(stream.read_exact(_SHELL_HEADER.size))
                        payload = stream.read_exact(length)
                        if kind == SHELL_STDIN and process.stdin and not process.stdin.closed:
                            _write_quietly(process.stdin, payload)
                        elif kind == SHELL_CLOSE_STDIN and process.stdin:
                            process.stdin.close()
                else:
                    while (data := stream.read_chunk()) is not None:
                        if process.stdin and not process.stdin.closed:
                            _write_quietly(process.stdin, data)
            except (_StreamClosed, OSError, ValueError):
                pass
            finally:
                try:
                    if process.stdin:
                        process.stdin.close()
                except OSError:
                    pass

        pumps = [threading.Thread(target=pump_out, args=(process.stdout, SHELL_STDOUT), daemon=True)]
        if process.stderr is not None:
            pumps.append(threading.Thread(target=pump_out, args=(process.stderr, SHELL_STDERR), daemon=True))
        threading.Thread(target=pump_in, daemon=True).start()
        for pump in pumps:
            pump.start()
        try:
            for pump in pumps:
                pump.join()
            code = process.wait()
        finally:
            with self._lock:
                self._processes.discard(process)
        if code < 0:
            code = 128 - code
        log.debug("command %r exited %d", command, code)
        if v2 and not stream.closed:
            stream.write(packet(SHELL_EXIT, bytes([code & 0xFF])))
        stream.drain(5)

    def _sync(self, stream: _Stream) -> None:
        """The v1 file sync protocol (SYNC.TXT): STAT, LIST, SEND, RECV, QUIT."""
        while True:
            request, length = _SYNC_REQUEST.unpack(stream.read_exact(_SYNC_REQUEST.size))
            if request == b"QUIT":
                return
            if length > 4096:
                self._sync_fail(stream, f"path too long ({length})")
                return
            path = stream.read_exact(length).decode("utf-8", "surrogateescape")
            log.debug("sync %s %s", request.decode(errors="replace"), path)
            if request == b"STAT":
                try:
                    st = os.lstat(self.device_path(path))
                    reply = _SYNC_STAT.pack(b"STAT", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                                            int(st.st_mtime) & 0xFFFFFFFF)
                except OSError:
                    reply = _SYNC_STAT.pack(b"STAT", 0, 0, 0)
                stream.write(reply)
            elif request == b"LIST":
                self._sync_list(stream, path)
            elif request == b"SEND":
                if not self._sync_send(stream, path):
                    return
            elif request == b"RECV":
                if not self._sync_recv(stream, path):
                    return
            else:
                self._sync_fail(stream, f"unknown sync request {request!r}")
                return

    @staticmethod
    def _sync_fail(stream: _Stream, message: str) -> None:
        data = message.encode()
        stream.write(_SYNC_REQUEST.pack(b"FAIL", len(data)) + data)

    def _sync_list(self, stream: _Stream, path: str) -> None:
        directory = self.device_path(path)
        out = bytearray()
        try:
            names = [".", ".."] + sorted(os.listdir(directory))
        except OSError:
            names = []
        for name in names:
            try:
                st = os.lstat(directory / name)
            except OSError:
                continue
            raw = name.encode("utf-8", "surrogateescape")
            out += _SYNC_DENT.pack(b"DENT", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                                   int(st.st_mtime) & 0xFFFFFFFF, len(raw)) + raw
            if len(out) >= SYNC_DATA_MAX:
                stream.write(bytes(out))
                out.clear()
        out += _SYNC_DENT.pack(b"DONE", 0, 0, 0, 0)
        stream.write(bytes(out))

    def _sync_send(self, stream: _Stream, spec: str) -> bool:
        """Receive one file; False when the sync session must end (after a FAIL, like adbd)."""
        path, _, mode_text = spec.rpartition(",")
        if not path:
            path, mode_text = spec, "33188"  # 0o100644
        try:
            mode = int(mode_text)
        except ValueError:
            mode = 0o100644
        target = self.device_path(path)
        error = self._push_failure
        chunks: list[bytes] | None = [] if stat.S_ISLNK(mode) else None
        handle = None
        if error is None and chunks is None:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    target.unlink()
                handle = open(target, "wb")  # noqa: SIM115 - closed below
            except OSError as exc:
                error = f"couldn't create file: {exc.strerror or exc}"
        mtime = 0
        try:
            while True:
                kind, value = _SYNC_REQUEST.unpack(stream.read_exact(_SYNC_REQUEST.size))
                if kind == b"DONE":
                    mtime = value
                    break
                if kind != b"DATA" or value > SYNC_DATA_MAX:
                    error = error or f"invalid data message {kind!r}"
                    self._sync_fail(stream, error)
                    return False
                data = stream.read_exact(value)
                if handle is not None and error is None:
                    try:
                        handle.write(data)
                    except OSError as exc:
                        error = f"write failed: {exc.strerror or exc}"
                elif chunks is not None:
                    chunks.append(data)
        finally:
            if handle is not None:
                handle.close()
        if error is None:
            try:
                if chunks is not None:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if target.is_symlink() or target.exists():
                        target.unlink()
                    os.symlink(b"".join(chunks).decode("utf-8", "surrogateescape"), target)
                else:
                    os.chmod(target, stat.S_IMODE(mode))
                    os.utime(target, (mtime, mtime))
            except OSError as exc:
                error = f"{exc.strerror or exc}"
        if error is not None:
            if handle is not None and self._push_failure is None:
                target.unlink(missing_ok=True)
            self._sync_fail(stream, error)
            return False
        stream.write(_SYNC_REQUEST.pack(b"OKAY", 0))
        return True

    def _sync_recv(self, stream: _Stream, path: str) -> bool:
        try:
            handle = open(self.device_path(path), "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            self._sync_fail(stream, exc.strerror or str(exc))
            return False
        out = bytearray()  # several DATA messages per WRTE: fewer round trips
        with handle:
            while data := handle.read(SYNC_DATA_MAX):
                out += _SYNC_REQUEST.pack(b"DATA", len(data)) + data
                if len(out) + _SYNC_REQUEST.size + SYNC_DATA_MAX > stream.conn.max_payload:
                    stream.write(bytes(out))
                    out.clear()
        out += _SYNC_REQUEST.pack(b"DONE", 0)
        stream.write(bytes(out))
        return True


def _write_quietly(pipe: IO[bytes], data: bytes) -> None:
    """Write all of `data` to a command's stdin; a command that stopped reading is not an error."""
    view = memoryview(data)
    try:
        while view:
            written = pipe.write(view)
            view = view[written or 0:]
    except (ValueError, OSError):
        pass


def _kill_group(process: subprocess.Popen, sig: int, then_kill_after: float | None = None) -> None:
    """Signal the command's whole process group (it runs in its own session)."""
    # The group outlives `sh` while its background children run, so signal it even after sh exited
    # (only tracked commands get here; Linux does not reuse a pid while its group exists).
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        return
    if then_kill_after is not None:
        def escalate() -> None:
            try:
                process.wait(then_kill_after)
            except subprocess.TimeoutExpired:
                pass
            _kill_group(process, signal.SIGKILL)
        threading.Thread(target=escalate, daemon=True).start()


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _getprop_script(props: dict[str, str]) -> str:
    listing = "\n".join(f"[{key}]: [{value}]" for key, value in sorted(props.items()))
    cases = "\n".join(f"  {_sh_quote(key)}) printf '%s\\n' {_sh_quote(value)} ;;"
                      for key, value in sorted(props.items()))
    return ("#!/bin/sh\n"
            "# getprop of the loopback adb device: no argument lists every property,\n"
            "# `getprop KEY [DEFAULT]` prints one value (or DEFAULT, or an empty line).\n"
            "if [ $# -eq 0 ]; then\n"
            "cat <<'LOOPBACK_PROPS_END'\n"
            f"{listing}\n"
            "LOOPBACK_PROPS_END\n"
            "exit 0\n"
            "fi\n"
            'case "$1" in\n'
            f"{cases}\n"
            "  *) printf '%s\\n' \"${2:-}\" ;;\n"
            "esac\n")


def _taskset_script() -> str:
    """`taskset MASK CMD...` that pins with the host's taskset when the mask fits this host and
    otherwise runs CMD unpinned (the device reports 8 CPUs; the host may have fewer)."""
    host = shutil.which("taskset", path="/usr/bin:/bin:/usr/sbin:/sbin")
    real = _sh_quote(host) if host else "''"
    return ("#!/bin/sh\n"
            "# taskset of the loopback adb device (see android_bench/loopback_device.py).\n"
            f"real={real}\n"
            'if [ $# -ge 2 ] && [ "${1#-}" = "$1" ]; then\n'
            '  mask=$1\n'
            '  shift\n'
            '  if [ -n "$real" ] && "$real" "$mask" true 2>/dev/null; then exec "$real" "$mask" "$@"; fi\n'
            '  echo "taskset: loopback device: CPU mask $mask does not fit this host; running unpinned" >&2\n'
            '  exec "$@"\n'
            "fi\n"
            'if [ -n "$real" ]; then exec "$real" "$@"; fi\n'
            'echo "taskset: not available on this host" >&2\n'
            "exit 1\n")


def _cpuinfo(cpus: int, props: dict[str, str]) -> str:
    block = ("processor\t: {i}\nBogoMIPS\t: 49.15\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics "
             "fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
             "CPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 1\n\n")
    parts = ["0xd46"] * 4 + ["0xd4d"] * (cpus - 5) + ["0xd4e"] if cpus > 4 else ["0xd46"] * cpus
    text = "".join(block.format(i=i, part=parts[i]) for i in range(cpus))
    return text + f"Hardware\t: {props.get('ro.board.platform', 'loopback')}\n"


class AdbServer:
    """The real adb server (`/usr/bin/adb`) on a private port, never the default 5037.

    start() runs `adb server nodaemon` as a child process (so it can always be reaped, and its log
    is kept: `server_log()`) and waits until it listens; stop() runs `adb kill-server` and makes
    sure the child is gone. Keys stay the user's (~/.android/adbkey, created by adb if missing).
    """

    def __init__(self, port: int = 0) -> None:
        self.port = port or _free_port()
        if self.port == 5037:
            raise ValueError("refusing to use the default adb server port 5037")
        self.env: dict[str, str] = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(self.port)}
        self._process: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    def adb(self, *args: str, timeout: float = 30, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess:  # noqa: A002 - as subprocess.run
        """Run `adb ARGS` against this server (text in/out; stdin empty unless `input`);
        CalledProcessError if `check` and it exits non-zero."""
        return subprocess.run([ADB_BINARY, *args], env=self.env, capture_output=True, text=True, input=input,
                              stdin=subprocess.DEVNULL if input is None else None, timeout=timeout, check=check)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        if self._process is not None:
            return
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen([ADB_BINARY, "server", "nodaemon"], env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._log.seek(0)
                output = self._log.read().decode(errors="replace").strip()
                self._process = None
                raise RuntimeError(f"adb server on port {self.port} exited at start: {output[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"adb server on port {self.port} did not start listening")

    def stop(self) -> None:
        """`adb kill-server` (also stops a server an `adb()` call auto-started on this port), then
        make sure the process start() launched is gone."""
        process, self._process = self._process, None
        try:
            self.adb("kill-server", timeout=10, check=False)
        except subprocess.TimeoutExpired:
            pass
        if process is not None:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        # The server notes its binary in ~/.android/adb.<port>; drop ours so runs leave no litter.
        marker = Path(self.env.get("HOME") or Path.home()) / ".android" / f"adb.{self.port}"
        try:
            marker.unlink(missing_ok=True)
        except OSError:
            pass

    def server_log(self) -> str:
        """What the server printed so far (for diagnosing failures)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def state(self, serial: str) -> str | None:
        """The state `adb devices` shows for `serial`, or None if it is not listed."""
        for line in self.adb("devices", timeout=10).stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == serial:
                return parts[1]
        return None

    def connect(self, device: LoopbackDevice, timeout: float = 10) -> None:
        """`adb connect` the device and wait until `adb devices` shows the state its mode implies
        ("device", "unauthorized" or "offline").

        adb 29 `adb connect` itself blocks up to 10 s while a device stays offline, so it runs in
        the background and is stopped once the server lists the device in the expected state.
        """
        wanted = device.mode
        client = subprocess.Popen([ADB_BINARY, "connect", device.serial], env=self.env, text=True,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                finished = client.poll() is not None
                state = self.state(device.serial)
                if state == wanted:
                    return
                if finished and state is None:
                    output = client.stdout.read().strip() if client.stdout else ""
                    raise RuntimeError(f"adb connect {device.serial} failed: {output}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{device.serial} is {state or 'not listed'}, not {wanted}, "
                                       f"after {timeout:g} s")
                time.sleep(0.05)
        finally:
            if client.poll() is None:
                try:
                    client.wait(1 if wanted == "device" else 0.05)
                except subprocess.TimeoutExpired:
                    client.terminate()
                    client.wait(5)
            if client.stdout:
                client.stdout.close()

    def __enter__(self) -> AdbServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Run a loopback device in the foreground until Ctrl-C (or SIGTERM); prints its serial."""
    parser = argparse.ArgumentParser(prog="python -m loopback.loopback_device", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="device filesystem folder (created if missing)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one outside 5555-5585)")
    parser.add_argument("--mode", choices=MODES, default="device")
    parser.add_argument("--prop", action="append", default=[], metavar="KEY=VALUE", help="override a property")
    parser.add_argument("-v", "--verbose", action="store_true", help="log protocol traffic to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(threadName)s %(message)s")
    props = dict(item.split("=", 1) for item in args.prop if "=" in item)
    args.root.mkdir(parents=True, exist_ok=True)
    stopped = threading.Event()
    if threading.current_thread() is threading.main_thread():
        # both set explicitly: a shell starts background jobs with SIGINT ignored, and Python then
        # never raises KeyboardInterrupt, so Ctrl-C (or a test's SIGINT) would not stop the device
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopped.set())
    with LoopbackDevice(args.root, args.port, props=props, mode=args.mode) as device:
        print(device.serial, flush=True)
        while not stopped.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
