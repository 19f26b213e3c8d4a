"""edgesr: efficient super-resolution from training graph to verified mobile models."""

__version__ = "0.1.0"
