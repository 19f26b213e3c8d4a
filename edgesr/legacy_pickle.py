"""A restricted unpickler for PyTorch checkpoints (legacy and zip formats) that `torch.load`'s
weights-only loader refuses: it resolves only the globals a state_dict of tensors needs
(tensor/parameter rebuild functions, storage types, OrderedDict) and refuses every other
global, so a pickle that would import or call code fails before anything runs.

Used through `torch.load(path, weights_only=False, pickle_module=restricted_pickle)`: torch
then builds its unpickler on `restricted_pickle.Unpickler`, whose find_class is the gate
(storage types are resolved by torch itself before it is consulted).
"""

from __future__ import annotations

import collections
import pickle
import types
from pathlib import Path

import torch

ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    **{("torch", name): getattr(torch, name) for name in (
        "FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage",
        "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage")},
}


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only ALLOWED globals."""

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only tensors and OrderedDict "
                                         "are allowed") from None


def _load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


restricted_pickle = types.SimpleNamespace(Unpickler=RestrictedUnpickler, load=_load, __name__="restricted_pickle")


def load_restricted(path: Path) -> object:
    """torch.load through the restricted unpickler (CPU tensors)."""
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=restricted_pickle)
