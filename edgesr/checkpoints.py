"""Reading and writing checkpoints: weights-only loading, wrapper unwrapping, strict matching."""

from __future__ import annotations

import io
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from edgesr.atomic import write_bytes_atomic
from edgesr.errors import UserError

BUILTIN_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class Checkpoint:
    """A state_dict plus what we know of where it came from."""

    state_dict: dict[str, torch.Tensor]
    source_format: str  # "edgesr", "basicsr" or "plain"
    metadata: dict


def read_checkpoint(path: Path) -> Checkpoint:
    """Load a checkpoint with weights_only=True (the zip format and the legacy one of old PyTorch,
    which the authors' SMSR checkpoints use; a pickle that would import or run code is refused)
    and unwrap the known container formats."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a directory: pass a .pt/.pth file")
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found: check the weights path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001  (a non-checkpoint file fails torch.load in many ways: KeyError too)
        raise UserError(f"cannot read checkpoint {path}: {_load_failure_reason(exc)}; edgesr loads only "
                        "weights-only PyTorch checkpoints (.pt/.pth state_dicts) and never runs pickled code") from None
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> Checkpoint:
    """The state_dict inside the known container formats."""
    if not isinstance(obj, dict):
        raise UserError(f"checkpoint {path} holds a {type(obj).__name__}, not a state_dict")
    source, metadata = "plain", {}
    if isinstance(obj.get("edgesr"), dict) and isinstance(obj.get("state_dict"), dict):
        source, metadata, obj = "edgesr", obj["edgesr"], obj["state_dict"]
    elif isinstance(obj.get("params_ema"), dict) or isinstance(obj.get("params"), dict):
        source, obj = "basicsr", obj.get("params_ema") or obj["params"]
    elif isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    state_dict = {key.removeprefix("module."): value for key, value in obj.items()}
    if not state_dict or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise UserError(f"checkpoint {path} is not a state_dict of tensors")
    return Checkpoint(state_dict, source, metadata)


def _load_failure_reason(exc: Exception) -> str:
    """The actual reason inside torch.load's long weights-only message, without ANSI codes,
    boilerplate, or its advice to load unsafely."""
    if not isinstance(exc, (pickle.UnpicklingError, RuntimeError, EOFError, OSError)):
        return f"not a PyTorch checkpoint ({type(exc).__name__} while unpickling)"
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).replace("WeightsUnpickler error:", "\n\n")
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    reasons = [p for p in paragraphs if p and not p.startswith(boilerplate)]
    if not reasons:
        return type(exc).__name__
    reason = reasons[0][:140]
    if "GLOBAL" in reason:
        return f"refused, it references code or non-tensor objects ({reason})"
    if "weights_only" in text or "Unsupported operand" in reason:
        return f"not a PyTorch checkpoint ({reason})"
    return reason


def _preview(keys: list[str], limit: int = 4) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict(strict=True) with a one-line error naming missing/unexpected/mis-shaped keys."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(expected[k].shape)}"
                  for k in sorted(set(expected) & set(state_dict)) if state_dict[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys: {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_preview(unexpected)}")
    if mis_shaped:
        problems.append(f"shape mismatch (checkpoint vs model): {_preview(mis_shaped, 2)}")
    if problems:
        raise UserError(f"checkpoint does not match {what}: " + "; ".join(problems))
    module.load_state_dict(state_dict, strict=True)


def save_checkpoint(path: Path, module: nn.Module, model: str, config: dict, graph: str, force: bool = False) -> None:
    """Save an edgesr checkpoint (state_dict + model name, config, graph kind) atomically."""
    payload = {"edgesr": {"model": model, "config": config, "graph": graph},
               "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()}}
    write_checkpoint(Path(path), payload, force)


def write_checkpoint(path: Path, payload: dict, force: bool) -> None:
    """torch.save through memory and an atomic write: a full disk is an OSError naming the file
    (torch.save straight to a file reports it as an obscure RuntimeError)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(path, buffer.getvalue(), force)


def builtin_checkpoint(model: str, variant: str, scale: int) -> Path | None:
    """The checkpoint the project trained and ships for this model/variant/scale, if any."""
    path = BUILTIN_DIR / f"{model}_{variant.lower()}_x{scale}.pt"
    return path if path.is_file() else None
