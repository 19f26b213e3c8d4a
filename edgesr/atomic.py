"""Write-then-rename output files and folders: a failure or a signal never leaves a half-written
file, and without --force an output that appears meanwhile (a second edgesr writing the same
path) is never overwritten: the final step is a rename that refuses to replace."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgesr import interrupts
from edgesr.errors import UserError, os_error

_TEMPORARY = re.compile(r"\.(.+)\.[A-Za-z0-9_]{8}\.part(\.[^.]+)?")  # mkstemp/mkdtemp names below

_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def ensure_writable_parent(path: Path) -> None:
    """Create the folder that will hold `path` and prove we can write there by creating (and
    removing) a file: permission bits say nothing for root, a read-only mount says no to root."""
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {parent}: {exc.strerror}: choose another path") from None
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".edgesr-write-test-"):
            pass
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise os_error(exc, f"writing into {parent}") from None
        raise UserError(f"cannot write into {parent}: {exc.strerror}: choose another path") from None


def check_output_path(path: Path, force: bool) -> None:
    """Refuse an existing output (without --force), a folder, or a place we cannot write into."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"output path {path} is a directory: pass a file name")
    if path.exists() and not force:
        raise UserError(f"output file {path} already exists: pass «force» to overwrite it, or choose another name")
    ensure_writable_parent(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _renameat2_noreplace(source: Path, target: Path) -> bool:
    """Linux renameat2(RENAME_NOREPLACE); False where the kernel, libc or file system lacks it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        rename = libc.renameat2
    except (OSError, AttributeError):
        return False
    if rename(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(target))


def publish(source: Path, target: Path, force: bool) -> None:
    """Move a finished temporary file or folder to `target`. With force, replace; without, fail
    if `target` exists, even if it appeared a moment ago."""
    if force:
        if source.is_dir() and target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(source, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(source, target)
        return
    try:
        if _renameat2_noreplace(source, target):
            return
        if source.is_dir():
            os.mkdir(target)  # atomic claim of the name; the finished folder then replaces the empty one
            os.replace(source, target)
        else:
            os.link(source, target)  # fails if target exists
            source.unlink()
    except FileExistsError:
        raise UserError(f"output {target} appeared while edgesr was writing it (another run writing the same "
                        "path?): nothing was overwritten; pass «force» to overwrite it") from None


def published_name(path: Path) -> str:
    """The name a temporary path of atomic_output / atomic_directory is published under
    ('.NAME.RANDOM.part[SUFFIX]' -> 'NAME'); any other path's own name."""
    match = _TEMPORARY.fullmatch(Path(path).name)
    return match.group(1) if match else Path(path).name


@contextlib.contextmanager
def atomic_output(path: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; publish it only if the block succeeds. On any error
    or signal (see edgesr.signals) the temporary file is removed."""
    path = Path(path)
    check_output_path(path, force)
    tmp = None
    try:
        with interrupts.deferred():  # a signal between creating the file and noting it would leave it behind
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
            os.close(fd)
            tmp = Path(tmp_name)
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        publish(tmp, path, force)
    except OSError as exc:
        raise os_error(exc, f"writing {path}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(path: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; publish it only if the block succeeds (an
    existing `path` is replaced with force, after the new directory is complete)."""
    path = Path(path)
    tmp = None
    try:
        with interrupts.deferred():
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        publish(tmp, path, force)
    except OSError as exc:
        raise os_error(exc, f"writing {path}") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes_atomic(path: Path, data: bytes, force: bool = False) -> None:
    """Write `data` to `path` through a temporary file and a rename."""
    with atomic_output(path, force) as tmp:
        tmp.write_bytes(data)
