"""The model families edgesr ships; importing this package registers them (edgesr.family)."""
