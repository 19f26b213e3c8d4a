"""`python export ARGS` from a checkout = `edgesr export ARGS` (the exporters live in edgesr/export/)."""

import sys

from edgesr.cli import main

sys.exit(main(["export", *sys.argv[1:]]))
