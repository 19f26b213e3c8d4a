"""Benchmarks on Android phones through a real adb server and TFLite's benchmark_model."""
