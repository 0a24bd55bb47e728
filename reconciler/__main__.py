"""`python -m reconciler` runs the command-line interface."""

from __future__ import annotations

import sys

from reconciler.cli import main

sys.exit(main())
