"""Several phones in one command: find them on one or more adb servers (`adb -H HOST -P PORT`),
run the same work on each in parallel (one worker per phone), and keep what each one finished:
a phone that fails or disappears loses only its own results, with the reason."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from edgesr.android.adb import Adb, AdbDevice, check_ready
from edgesr.errors import EdgeSRError, UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Phone:
    """One device on one adb server."""

    adb: Adb
    serial: str

    @property
    def label(self) -> str:
        """'adb:SERIAL', or 'adb:HOST:PORT/SERIAL' for a device behind a named adb server."""
        return f"adb:{self.adb.server}/{self.serial}" if self.adb.server else f"adb:{self.serial}"


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one phone's worker returned, or why it stopped."""

    phone: Phone
    result: T | None
    error: str | None


def find_phones(adb_path: str | None, servers: list[str] | None, serials: list[str] | None,
                all_devices: bool) -> list[Phone]:
    """The phones a command runs on: every ready device (`all_devices`), the named serials, or
    the only device, across the given adb servers (default: the local one)."""
    clients = [Adb(adb_path, server=server) for server in dict.fromkeys(servers or [None])]
    seen: list[tuple[Adb, AdbDevice]] = [(adb, device) for adb in clients for device in adb.devices()]
    where = ", ".join(adb.server or "the local adb server" for adb in clients)
    if all_devices:
        phones = [Phone(adb, d.serial) for adb, d in seen if d.state == "device"]
        if not phones:
            known = ", ".join(f"{d.serial} ({d.state})" for _, d in seen) or "none"
            raise UserError(f"no ready adb device on {where} (adb sees: {known}): check 'adb devices'")
        return phones
    if serials:
        phones = []
        for serial in dict.fromkeys(serials):
            matches = [(adb, d) for adb, d in seen if d.serial == serial]
            if not matches:
                known = ", ".join(f"{d.serial} ({d.state})" for _, d in seen) or "none"
                raise UserError(f"device {serial} is not connected to {where} (adb sees: {known})")
            check_ready(matches[0][1])
            phones.append(Phone(matches[0][0], serial))
        return phones
    if not seen:
        raise UserError(f"no adb device connected to {where}: plug in the phone with USB debugging on "
                        "(or 'adb connect HOST:PORT') and check 'adb devices'")
    if len(seen) > 1:
        raise UserError(f"{len(seen)} adb devices connected ({', '.join(d.serial for _, d in seen)}): pick with "
                        "«serial» or take them all with «all_devices»")
    check_ready(seen[0][1])
    return [Phone(seen[0][0], seen[0][1].serial)]


def on_each(phones: list[Phone], work: Callable[[Phone], T]) -> list[Outcome[T]]:
    """`work` on every phone at once, one thread each. A phone whose work raises an edgesr error
    gets that error's line as its outcome; the others are unaffected. One phone runs in this
    thread and its error propagates, as for any single-device command."""
    if len(phones) == 1:
        return [Outcome(phones[0], work(phones[0]), None)]
    outcomes: dict[int, Outcome[T]] = {}

    def worker(i: int, phone: Phone) -> None:
        try:
            outcomes[i] = Outcome(phone, work(phone), None)
        except EdgeSRError as exc:
            outcomes[i] = Outcome(phone, None, str(exc))
        except Exception as exc:  # noqa: BLE001  (a bug must not take the other phones' results with it)
            outcomes[i] = Outcome(phone, None, f"internal error: {type(exc).__name__}: {exc}")

    # daemon threads: Ctrl-C in the main thread ends the command without waiting for the phones
    threads = [threading.Thread(target=worker, args=(i, p), name=f"edgesr-{p.label}", daemon=True)
               for i, p in enumerate(phones)]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)
    return [outcomes[i] for i in range(len(phones))]
