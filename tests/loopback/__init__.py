"""Test doubles for the adb path: a loopback adb device daemon and a stand-in benchmark_model."""
