"""`python -m edgesr ...` runs the command line."""

import sys

from edgesr.cli import main

sys.exit(main())
