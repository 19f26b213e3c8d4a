"""The model families edgesr ships; importing this package registers them (edgesr.family)."""

from edgesr.families import classsr, ecbsr, smsr, splitsr  # noqa: F401  (each registers itself)
