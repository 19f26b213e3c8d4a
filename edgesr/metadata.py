"""What an exported file says about itself: family, variant, scale, colour space, pixel range,
tensor names, edgesr version, the checkpoint's SHA-256 and the parity measured at export.

Stored as JSON under the key 'edgesr': in an ONNX file's metadata_props, in a TFLite file's
metadata table (a buffer named 'edgesr', as TFLite's own metadata is stored), in an ExecuTorch
.pte as the string its constant method `edgesr_metadata` returns: a slot of PTE_SLOT bytes
(marker, JSON, space padding) that ExecuTorch stores verbatim, so it is read and rewritten in
place. A consumer needs nothing else to use the file correctly."""

from __future__ import annotations

import json
from pathlib import Path

from edgesr.errors import ToolError
from edgesr.extras import require
from edgesr.version import __version__

KEY = "edgesr"
SCHEMA = "edgesr-model/1"
PTE_METHOD = "edgesr_metadata"
PTE_MARKER = b"EDGESR-METADATA:"
PTE_SLOT = 32768  # bytes: marker + JSON + padding


def pte_slot(text: str = "{}") -> str:
    """The slot's content for JSON `text` (what export puts in the .pte's constant method)."""
    body = PTE_MARKER + text.encode()
    if len(body) > PTE_SLOT:
        raise ToolError(f"edgesr metadata of {len(body)} bytes does not fit the .pte slot of {PTE_SLOT}")
    return (body + b" " * (PTE_SLOT - len(body))).decode()


def _pte_slot_at(data: bytes) -> int | None:
    at = data.find(PTE_MARKER)
    return at if at >= 0 and at + PTE_SLOT <= len(data) else None


def document(model: dict, graph: str, precision: str, parity: list[dict] | None = None) -> dict:
    """The metadata of one file: the model's description (edgesr.model.Prepared.metadata), which
    graph of its deployable the file holds, its precision and the parity figures."""
    return {"schema": SCHEMA, "edgesr_version": __version__, **model, "graph": graph, "precision": precision,
            "parity": parity or []}


def embed(path: Path, meta: dict) -> None:
    """Write `meta` into the .onnx, .tflite or .pte file at `path` (rewriting it in place)."""
    text = json.dumps(meta, sort_keys=True)
    if path.suffix == ".pte":
        data = bytearray(path.read_bytes())
        at = _pte_slot_at(bytes(data))
        if at is None:
            raise ToolError(f"{path} has no edgesr metadata slot: export it again with «format» pte")
        data[at:at + PTE_SLOT] = pte_slot(text).encode()
        path.write_bytes(bytes(data))
        return
    if path.suffix == ".onnx":
        onnx = require("onnx", "onnx")
        model = onnx.load(str(path))
        for prop in list(model.metadata_props):
            if prop.key == KEY:
                model.metadata_props.remove(prop)
        model.metadata_props.add(key=KEY, value=text)
        onnx.save(model, str(path))
        return
    flatbuffers = require("flatbuffers", "tflite")
    schema = require("ai_edge_litert.schema_py_generated", "tflite")
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    model.buffers = model.buffers or []
    model.metadata = [m for m in (model.metadata or []) if m.name != KEY.encode()]
    buffer = schema.BufferT()
    buffer.data = list(text.encode())
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = KEY, len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(path.stat().st_size + len(text) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


def read(path: Path) -> dict | None:
    """The edgesr metadata of a model file, or None for a file without it (another tool's)."""
    path = Path(path)
    try:
        if path.suffix == ".pte":
            data = path.read_bytes()
            at = _pte_slot_at(data)
            text = data[at + len(PTE_MARKER):at + PTE_SLOT].rstrip(b" ").decode() if at is not None else None
        elif path.suffix == ".onnx":
            onnx = require("onnx", "onnx")
            model = onnx.load(str(path), load_external_data=False)
            text = next((p.value for p in model.metadata_props if p.key == KEY), None)
        else:
            schema = require("ai_edge_litert.schema_py_generated", "tflite")
            data = path.read_bytes()
            model = schema.Model.GetRootAsModel(data, 0)
            text = None
            for i in range(model.MetadataLength()):
                entry = model.Metadata(i)
                if entry.Name() == KEY.encode():
                    text = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode()
    except ToolError:
        raise
    except Exception:  # noqa: BLE001  (a corrupt file: its runtime says so, in its own words, when it opens it)
        return None
    try:
        return (json.loads(text) or None) if text is not None else None  # an empty slot: {}
    except ValueError:
        return None
