"""``python -m robcurves ARGS``: the ``robcurves`` command, for environments without the entry
point on PATH."""

import sys

from .cli import main

if __name__ == "__main__":  # importing the module (e.g. to list the package) runs nothing
    sys.exit(main())
