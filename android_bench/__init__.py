"""Android benchmarking through adb: device harness, benchmark_model output parsing, loopback test device."""
