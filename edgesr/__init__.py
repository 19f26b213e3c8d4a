"""edgesr: efficient super-resolution networks from their training graph to verified mobile models.

The Python API (edgesr.api) is available from here: edgesr.load, edgesr.open_model, edgesr.available_families.
"""

from edgesr.version import __version__ as __version__

_API = ("Model", "ExportedModel", "load", "open_model", "available_families", "RandomWeightsWarning", "ExportReport",
        "VerifyReport", "EvalReport", "BenchReport", "MissingMetadata", "SKIMAGE")


def __getattr__(name: str):
    """The API loads on first use: `import edgesr.errors` stays light (no torch)."""
    if name in _API:
        from edgesr import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgesr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
