"""robcurves: robustness curves over all perturbation sizes.

Main entry points: :func:`wrap` a classifier, :func:`distances` per point, build a
:class:`RobustnessCurve`, and compare curves.
"""

from __future__ import annotations

from . import data
from ._norms import parse_norm
from .curve import RobustnessCurve
from .evaluate import distances
from .model import Classifier, wrap
from .results import Distances

__version__ = "0.1.0"

__all__ = ["data", "Classifier", "Distances", "RobustnessCurve", "distances", "parse_norm", "wrap",
           "__version__"]
