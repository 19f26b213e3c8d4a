"""Host-CPU benchmarks: harness, worker processes, statistics, CPU facts, reports."""
