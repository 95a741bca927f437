"""Robustness curves: the empirical CDF of per-point minimal adversarial distances.

``R(eps) = P[d* <= eps]`` is the robust *error* at ``eps``; robust accuracy is ``1 - R(eps)``.
From n points it is a right-continuous step function, evaluated exactly at any eps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._norms import NormLike, parse_norm
from .results import Distances, PerPoint, read_json_file

__all__ = ["RobustnessCurve", "CURVE_FORMAT", "CURVE_VERSION"]

CURVE_FORMAT = "robcurves-curve"
CURVE_VERSION = 1


def _as_eps(eps: float | Sequence[float] | np.ndarray) -> np.ndarray:
    e = np.asarray(eps, dtype=np.float64)
    if np.isnan(e).any():
        raise ValueError("eps must not be NaN")
    if (e < 0).any():
        raise ValueError(f"eps must be >= 0; got min {float(e.min())}")
    return e


def _infinities_as_null(obj: object) -> object:
    """``obj`` with every infinite float (in nested dicts, lists and tuples) replaced by None:
    JSON has no infinity, and ``None`` reads as "no bound" where bounds are concerned."""
    if isinstance(obj, float) and math.isinf(obj):
        return None
    if isinstance(obj, dict):
        return {k: _infinities_as_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_infinities_as_null(v) for v in obj]
    return obj


@dataclass(frozen=True, repr=False)
class RobustnessCurve(PerPoint):
    """Robust error as a function of the perturbation size, for one model, data set and norm.

    Attributes:
        distances: float64 per-point distances in raw input space, in point order (``+inf``
            for points no attack broke; 0 for misclassified points).
        norm: ``math.inf``, ``2.0`` or ``1.0``; or a threat label for curves of another
            threat (``"union(linf:0.1,l2:1)"`` from :func:`robcurves.union`,
            ``"spatial(deg:30,px:3)"``), saved as such and compared only with equal labels.
        name: label of the model in plots and reports.
        kind: ``"upper"`` when the distances are attack results (the curve lies *below* the
            true one), ``"lower"`` for certified radii (it lies *above*), ``"exact"``.
        indices: positions of the points in their data set (used to pair curves).
        labels, predictions: per-point true labels and clean predictions, when known.
        metadata: model, data, attack/certificate and settings (JSON-serialisable).
    """

    distances: np.ndarray
    norm: float | str
    name: str = "model"
    kind: str = "upper"
    indices: np.ndarray | None = None
    labels: np.ndarray | None = None
    predictions: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)
    _sorted: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        d = self._validate(copy=True)  # own copy: the curve is immutable
        if d.size == 0:
            raise ValueError("a robustness curve needs at least one point; got 0 distances")
        d.flags.writeable = False
        for name in ("indices", "labels", "predictions"):
            v = getattr(self, name)
            if v is not None:
                v = np.array(v, dtype=np.int64)
                if v.shape != d.shape:
                    raise ValueError(f"{name} must have shape {d.shape}; got {v.shape}")
                v.flags.writeable = False
                object.__setattr__(self, name, v)
        s = np.sort(d)
        s.flags.writeable = False
        object.__setattr__(self, "_sorted", s)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_distances(cls, d: Distances | np.ndarray | Sequence[float],
                       norm: NormLike | None = None, name: str | None = None,
                       metadata: dict | None = None, kind: str | None = None
                       ) -> RobustnessCurve:
        """Build a curve from a :class:`Distances` or from a plain array of distances.

        A plain array may come from any tool; ``norm`` is then required.
        """
        meta = dict(metadata or {})
        if isinstance(d, Distances):
            if norm is not None and parse_norm(norm) != d.norm:
                raise ValueError(f"norm {norm!r} does not match the distances' norm {d.norm_name}")
            meta.setdefault("method", d.method)
            meta.setdefault("settings", d.settings)
            meta.setdefault("cost", d.cost)
            meta.setdefault("n_unbroken", d.n_unbroken)
            return cls(distances=d.distances, norm=d.norm, name=name or d.method,
                       kind=kind or d.kind, indices=d.indices, labels=d.labels,
                       predictions=d.predictions, metadata=meta)
        if norm is None:
            raise ValueError("norm is required when building a curve from a plain array")
        return cls(distances=np.asarray(d, dtype=np.float64), norm=norm, name=name or "model",
                   kind=kind or "upper", metadata=meta)

    # ------------------------------------------------------------------ evaluation
    @property
    def sorted_distances(self) -> np.ndarray:
        return self._sorted

    def robust_error(self, eps: float | Sequence[float] | np.ndarray) -> np.ndarray | float:
        """Fraction of points with distance <= eps (right-continuous, exact at any eps)."""
        e = _as_eps(eps)
        r = np.searchsorted(self._sorted, e, side="right") / self.n
        return float(r) if r.ndim == 0 else r

    def robust_accuracy(self, eps: float | Sequence[float] | np.ndarray) -> np.ndarray | float:
        """1 - robust_error(eps)."""
        r = self.robust_error(eps)
        return 1.0 - r

    @property
    def clean_error(self) -> float:
        """Robust error at eps = 0: the fraction of misclassified points."""
        return float(self.robust_error(0.0))

    @property
    def median_distance(self) -> float:
        """Median of the per-point distances (``+inf`` if half the points are unbroken)."""
        return float(np.median(self.distances))

    def eps_at_error(self, q: float) -> float:
        """Smallest eps at which the robust error reaches ``q`` (``+inf`` if it never does)."""
        if not 0.0 < q <= 1.0:
            raise ValueError(f"q must lie in (0, 1]; got {q}")
        k = math.ceil(q * self.n - 1e-12)
        return float(self._sorted[k - 1])

    def auc(self, eps_max: float, normalized: bool = False) -> float:
        """Area under the robust-error curve on [0, eps_max], exact for the step function.

        Equals ``mean(max(0, eps_max - d_i))``. With ``normalized=True`` it is divided by
        ``eps_max`` (then in [0, 1]).
        """
        if not (eps_max > 0 and math.isfinite(eps_max)):
            raise ValueError(f"eps_max must be a positive finite number; got {eps_max}")
        area = float(np.maximum(0.0, eps_max - self.distances).mean())
        return area / eps_max if normalized else area

    def steps(self, eps_max: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Knots ``(eps, robust_error)`` of the step function from 0 up to ``eps_max``.

        ``robust_error[i]`` holds on ``[eps[i], eps[i+1])``; the last knot is ``eps_max``.
        """
        finite = self._sorted[np.isfinite(self._sorted)]
        if eps_max is None:
            eps_max = float(finite.max()) * 1.05 if finite.size and finite.max() > 0 else 1.0
        knots = np.unique(np.concatenate([[0.0], finite[finite <= eps_max], [eps_max]]))
        return knots, np.asarray(self.robust_error(knots), dtype=np.float64)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        def ints(a: np.ndarray | None) -> list[int] | None:
            return None if a is None else [int(v) for v in a]

        return {
            "format": CURVE_FORMAT,
            "version": CURVE_VERSION,
            "name": self.name,
            "norm": self.norm_name,
            "kind": self.kind,
            "n": self.n,
            # +inf (unbroken points) is stored as null: JSON has no infinity.
            "distances": [None if math.isinf(v) else float(v) for v in self.distances],
            "indices": ints(self.indices),
            "labels": ints(self.labels),
            "predictions": ints(self.predictions),
            "metadata": _infinities_as_null(self.metadata),
        }

    def save(self, path: str | Path) -> Path:
        """Write the curve as JSON (format ``robcurves-curve``, version 1).

        Fields: ``format``, ``version``, ``name``, ``norm`` (``linf``/``l2``/``l1``), ``kind``,
        ``n``, ``distances`` (per point, ``null`` = +inf), ``indices``, ``labels``,
        ``predictions`` (per point or ``null``), ``metadata`` (free-form object; infinite
        numbers in it, such as the ``bounds`` of unbounded inputs, are stored as ``null``).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False))
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, obj: dict, origin: str = "<dict>") -> RobustnessCurve:
        if not isinstance(obj, dict) or obj.get("format") != CURVE_FORMAT:
            raise ValueError(f"{origin} is not a robcurves curve file "
                             f"(expected format {CURVE_FORMAT!r})")
        if obj.get("version") != CURVE_VERSION:
            raise ValueError(f"{origin} has curve format version {obj.get('version')!r}; this "
                             f"robcurves reads version {CURVE_VERSION}")
        d = np.array([math.inf if v is None else v for v in obj["distances"]], dtype=np.float64)
        if d.shape[0] != obj.get("n"):
            raise ValueError(f"{origin}: n={obj.get('n')} but {d.shape[0]} distances stored")
        return cls(distances=d, norm=obj["norm"], name=obj["name"], kind=obj["kind"],
                   indices=obj.get("indices"), labels=obj.get("labels"),
                   predictions=obj.get("predictions"), metadata=obj.get("metadata") or {})

    @classmethod
    def load(cls, path: str | Path) -> RobustnessCurve:
        """Read a curve written by :meth:`save`; fails clearly on another format or version."""
        obj = read_json_file(path, "curve file")
        return cls.from_dict(obj, origin=str(path))

    # ------------------------------------------------------------------ plotting
    def plot(self, ax=None, label: str | None = None, eps_max: float | None = None,
             eps_markers: Sequence[float] = (), accuracy: bool = False, **kwargs):
        """Step plot of robust error (or accuracy) against eps; returns the matplotlib axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        eps, err = self.steps(eps_max)
        y = 1.0 - err if accuracy else err
        ax.step(eps, y, where="post", label=label or self.name, **kwargs)
        for e in eps_markers:
            ax.axvline(e, color="0.5", linestyle="--", linewidth=0.8)
        ax.set_xlabel(f"eps ({self.norm_name} distance in input space)")
        ax.set_ylabel("robust accuracy" if accuracy else "robust error")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(left=0)
        return ax
