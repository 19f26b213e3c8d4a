"""Capture the native stdout/stderr chatter of converters (TensorFlow, MLIR, torch.onnx)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


class NativeOutputError(RuntimeError):
    """A captured step failed: carries the tail of what it printed."""


@contextlib.contextmanager
def captured_output(step: str) -> Iterator[None]:
    """Silence fds 1 and 2 (C++ logs included) while the block runs; on failure re-raise with
    the last lines the block printed, so nothing useful is lost."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as log, open(log.fileno(), "w", closefd=False) as text:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield
        except Exception as exc:
            text.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-15:]
            raise NativeOutputError(f"{step} failed: {exc}\n" + "\n".join(tail)) from exc
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
