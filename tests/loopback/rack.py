"""A rack of loopback phones for demos: N real adb servers on private ports, one loopback device
behind each (as USB hubs on N hosts), until Ctrl-C or SIGTERM. Prints the options that reach them:

    cd tests && python -m loopback.rack --phones 2 --prop 1:edgesr.standin.output=corrupt
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path

from loopback.loopback_device import AdbServer
from loopback.rig import start_phone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loopback.rack", description=__doc__.split("\n")[0])
    parser.add_argument("--phones", type=int, default=2, help="phones, one per adb server (default: 2)")
    parser.add_argument("--prop", action="append", default=[], metavar="I:KEY=VALUE",
                        help="a device property of phone I (0-based), e.g. 0:edgesr.standin.gpu=fp16")
    args = parser.parse_args(argv)
    props: list[dict[str, str]] = [{} for _ in range(args.phones)]
    for item in args.prop:
        index, _, pair = item.partition(":")
        key, _, value = pair.partition("=")
        props[int(index)][key] = value
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    servers, phones = [], []
    with tempfile.TemporaryDirectory(prefix="edgesr-rack-") as root:
        try:
            for i in range(args.phones):
                server = AdbServer()
                server.start()
                servers.append(server)
                phones.append(start_phone(Path(root) / f"phone{i}", server, props=props[i]))
            print(" ".join(f"--adb-server 127.0.0.1:{s.port}" for s in servers), flush=True)
            while not stopped.wait(0.5):
                pass
        finally:
            for phone in phones:
                phone.stop()
            for server in servers:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
