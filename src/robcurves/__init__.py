"""robcurves: robustness curves over all perturbation sizes.

Main entry points: :func:`wrap` a classifier, :func:`distances` per point (attacks: upper
bounds), :func:`certify` (lower bounds), :class:`RobustnessCurve`, :func:`band` between the two,
:func:`compare` curves of several models, :func:`interclass_distances` for the data's scale,
:func:`load_model` for models trained by ``robcurves train``, :func:`set_threads` for torch's
CPU thread count (one thread is the safe choice on a busy machine).

``robcurves.compare`` and ``robcurves.certify`` are the functions; their modules stay importable
as ``from robcurves.comparison import Comparison`` and ``from robcurves.certificates import ...``.
"""

from __future__ import annotations

from . import data
from ._norms import parse_norm
from ._threads import set_threads
from .bands import Band, band
from .certificates import certify
from .comparison import compare
from .curve import RobustnessCurve
from .evaluate import distances
from .model import Classifier, wrap
from .results import Distances
from .scale import interclass_distances
from .train import load_model

__version__ = "0.1.0"

__all__ = ["data", "Band", "Classifier", "Distances", "RobustnessCurve", "band", "certify",
           "compare", "distances", "interclass_distances", "load_model", "parse_norm",
           "set_threads", "wrap", "__version__"]
