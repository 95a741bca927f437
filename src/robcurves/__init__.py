"""robcurves: robustness curves over all perturbation sizes.

Main entry points: :func:`wrap` a classifier, :func:`distances` per point (attacks: upper
bounds), :func:`certify` (lower bounds), :class:`RobustnessCurve`, :func:`band` between the two,
:func:`compare` curves of several models (a :class:`Comparison`), :func:`interclass_distances`
for the data's scale (:class:`InterclassDistances`), :func:`build_report` /
:func:`write_report` for the pages, :func:`load_model` for models trained by
``robcurves train`` (:mod:`robcurves.train` holds ``fit`` and the rest of training) and
:mod:`robcurves.data` for data sets, :func:`set_threads` for torch's CPU thread count (one
thread is the safe choice on a busy machine), :func:`resolve_device`,
:func:`batch_size_for` and :func:`set_deterministic` for GPUs, :func:`union` /
:func:`union_surface` for several threat models at once, :func:`affine_distances` for their
affine combinations (Tramèr & Boneh), :func:`spatial_distances` for rotations and
translations, and
:func:`robust_accuracy` for the robust accuracy at one eps under the AutoAttack protocol
papers report (a :class:`RobustAccuracy`).

Norms are accepted in any :data:`NormLike` spelling (``"linf"``, ``math.inf``, ``"l2"``, ``2``,
``"l1"``, ``1``...) and held as the float p by every ``.norm`` attribute; names in files and
tables are ``"linf"``, ``"l2"``, ``"l1"``. Input bounds are a pair ``(low, high)``
(:data:`Bounds`; ``None`` for unbounded inputs).

No public name is both a module and a function: :func:`compare`, :func:`band`, :func:`certify`
and :func:`robcurves.train.fit` live in :mod:`robcurves.comparison`, :mod:`robcurves.bands`,
:mod:`robcurves.certificates` and :mod:`robcurves.train.loop`, :func:`union` in
:mod:`robcurves.unions`; each attack in a private module
of :mod:`robcurves.attacks`.
"""

from __future__ import annotations

from . import data, train
from ._device import batch_size_for, resolve_device, set_deterministic
from ._norms import NormLike, norm_name, parse_norm
from ._ray import ModelSpec
from ._threads import set_threads
from .bands import Band, band
from .certificates import certify
from .classifier import Bounds, Classifier
from .comparison import Comparison, compare
from .curve import RobustnessCurve
from .evaluate import distances
from .model import wrap
from .protocol import RobustAccuracy, robust_accuracy
from .report import build_report, write_report
from .results import Distances
from .scale import InterclassDistances, interclass_distances
from .train import load_model
from .unions import affine_distances, spatial_distances, union, union_surface

__version__ = "0.1.0"

__all__ = ["data", "train", "affine_distances", "Band", "Bounds", "Classifier", "Comparison",
           "Distances",
           "InterclassDistances", "ModelSpec", "NormLike", "RobustAccuracy", "RobustnessCurve",
           "band", "batch_size_for", "build_report", "resolve_device", "set_deterministic",
           "certify", "compare", "distances", "interclass_distances", "load_model", "norm_name",
           "parse_norm", "robust_accuracy", "set_threads", "spatial_distances", "union",
           "union_surface", "wrap", "write_report", "__version__"]
