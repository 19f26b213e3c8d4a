"""`python android_bench ARGS` from a checkout = `edgesr bench --device adb ARGS` (the code lives in
edgesr/android/; the phone-side script is edgesr/android/run_benchmark.sh)."""

import sys

from edgesr.cli import main

sys.exit(main(["bench", "--device", "adb", *sys.argv[1:]]))
