"""The bundle format: a folder holding each graph of a multi-graph deployable (one .onnx or
.tflite file per graph, each with its own metadata) and manifest.json, which names the family,
the glue's parameters, every file with its SHA-256, and the parity measured at export."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edgesr.errors import UserError

MANIFEST = "manifest.json"
FORMAT = "edgesr-bundle"
VERSION = 2
SUFFIXES = {"onnx": ".onnx", "tflite": ".tflite", "pte": ".pte"}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _bad(path: Path, problem: str) -> UserError:
    return UserError(f"bundle {path}: {problem}; export it again with 'edgesr export'")


_FIELDS = {"family": str, "variant": str, "config": dict, "io": dict, "runtime": str, "precision": str,
           "params": dict, "graphs": list}
_GRAPH_FIELDS = {"name": str, "file": str, "sha256": str, "precision": str}


def read_manifest(path: Path) -> dict:
    """manifest.json of a bundle folder, checked for format, fields and the files it names."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"bundle {path} not found: pass the folder written by 'edgesr export'")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise _bad(path, f"no {MANIFEST}, so it is not an edgesr bundle")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad(path, f"{MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _bad(path, f"{MANIFEST} is not an {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise _bad(path, f"manifest version {manifest.get('version')} is not {VERSION} (an older edgesr wrote it)")
    for key, kind in _FIELDS.items():
        if not isinstance(manifest.get(key), kind):
            raise _bad(path, f"{MANIFEST}: field '{key}' is missing or has the wrong type")
    if manifest["runtime"] not in SUFFIXES or not manifest["graphs"]:
        raise _bad(path, f"{MANIFEST} names no graphs of a known runtime")
    for entry in manifest["graphs"]:
        if not isinstance(entry, dict) or any(not isinstance(entry.get(k), t) for k, t in _GRAPH_FIELDS.items()):
            raise _bad(path, f"{MANIFEST}: a graph entry lacks name, file, sha256 or precision")
        file = path / entry["file"]
        if Path(entry["file"]).name != entry["file"] or not file.is_file():
            raise _bad(path, f"{MANIFEST} names {entry['file']}, which is not a file in the bundle")
        if file.suffix != SUFFIXES[manifest["runtime"]]:
            raise _bad(path, f"{entry['file']} is not a {manifest['runtime']} file")
        if file_sha256(file) != entry["sha256"]:
            raise _bad(path, f"{entry['file']} does not match the checksum in {MANIFEST} (the file was changed)")
    return manifest
