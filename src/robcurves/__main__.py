"""``python -m robcurves ARGS``: the ``robcurves`` command, for environments without the entry
point on PATH."""

import sys

from .cli import main

sys.exit(main())
