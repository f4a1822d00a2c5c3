"""`python -m optbench`: the optbench command (optbench/cli.py)."""

import sys

from optbench.cli import main

sys.exit(main())
