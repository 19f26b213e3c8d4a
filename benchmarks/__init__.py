"""Latency benchmarks: the host harness (`edgesr bench`), its reports and the published tables."""
