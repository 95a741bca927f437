"""Per-point results of attacks and certificates: the :class:`Distances` dataclass."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from ._norms import norm_name, parse_threat


def read_json_file(path: str | Path, what: str) -> dict:
    """The JSON object in ``path``; a missing file or invalid JSON is an error naming the file
    and ``what`` it should hold (e.g. ``"curve file"``)."""
    import json

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc

__all__ = ["Distances", "PerPoint", "Kind"]

Kind = Literal["upper", "lower", "exact"]
_KINDS = ("upper", "lower", "exact")


class PerPoint:
    """What :class:`Distances` and :class:`~robcurves.curve.RobustnessCurve` share: per-point
    ``distances`` in one ``norm`` (a float, see :mod:`robcurves._norms`; or a threat label
    such as ``"union(linf:1,l2:0.5)"`` for threats that are not one l_p ball) of one ``kind``,
    their validation, and the counts and names derived from them."""

    distances: np.ndarray
    norm: float | str
    kind: str

    def _validate(self, copy: bool) -> np.ndarray:
        """Parse ``norm``, check ``kind`` and the distances (one-dimensional, no NaN, >= 0) and
        store them as float64 (a private copy with ``copy``); returns them."""
        object.__setattr__(self, "norm", parse_threat(self.norm))
        d = (np.array if copy else np.asarray)(self.distances, dtype=np.float64)
        if d.ndim != 1:
            raise ValueError(f"distances must be one-dimensional; got shape {d.shape}")
        if np.isnan(d).any():
            raise ValueError(f"distances contain {int(np.isnan(d).sum())} NaN values")
        if (d < 0).any():
            raise ValueError(f"distances must be >= 0; found min {float(d.min())}")
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}; got {self.kind!r}")
        object.__setattr__(self, "distances", d)
        return d

    @property
    def n(self) -> int:
        """Number of points."""
        return int(self.distances.shape[0])

    @property
    def norm_name(self) -> str:
        """``"linf"``, ``"l2"``, ``"l1"``, or the threat label."""
        return norm_name(self.norm)

    @property
    def n_unbroken(self) -> int:
        """Points for which no adversarial was found (distance ``+inf``)."""
        return int(np.isinf(self.distances).sum())

    def __repr__(self) -> str:
        label = getattr(self, "name", None) or getattr(self, "method", "")
        return (f"{type(self).__name__}({label!r}, norm={self.norm_name!r}, kind={self.kind!r}, "
                f"n={self.n}, unbroken={self.n_unbroken})")


@dataclass(frozen=True, repr=False)
class Distances(PerPoint):
    """Per-point minimal-distance estimates for one model, one data set and one norm.

    Distances are measured in the model's *raw* input space (before any preprocessing the
    wrapper applies), in the l_p norm ``norm``.

    Attributes:
        distances: float64 ``(n,)``. For ``kind="upper"`` (attacks) the norm of a verified
            adversarial, ``+inf`` where no attack succeeded; for ``kind="lower"``
            (certificates) a certified radius; ``kind="exact"`` when both coincide. A point the
            model already misclassifies has distance 0.
        labels: int64 ``(n,)`` true labels.
        predictions: int64 ``(n,)`` the model's clean predictions.
        indices: int64 ``(n,)`` positions of the points in the data set they came from.
        norm: ``math.inf``, ``2.0`` or ``1.0`` (or a threat label such as
            ``"spatial(deg:30,px:3)"``, see :func:`robcurves._norms.parse_threat`).
        method: name of the attack or certificate (``"pgd-bisect"``, ``"crown"``...).
        kind: ``"upper"``, ``"lower"`` or ``"exact"`` bound on the true minimal distance.
        settings: the method's parameters (JSON-serialisable).
        cost: measured cost: ``forward_per_point``, ``backward_per_point`` (model passes per
            point, counting each sample once per pass), ``seconds``, and for attacks
            ``rejected`` (returned inputs that failed the re-check). Keys ending in
            ``_per_point`` are averages, the others totals.
        adversarials: float32 adversarial inputs ``(n, ...)`` when requested (the clean input
            for misclassified points, NaN for unbroken points), else ``None``.
    """

    distances: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    indices: np.ndarray
    norm: float | str
    method: str
    kind: Kind = "upper"
    settings: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)
    adversarials: np.ndarray | None = None

    def __post_init__(self) -> None:
        d = self._validate(copy=False)
        for name in ("labels", "predictions", "indices"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64))
        n = d.shape[0]
        for name in ("labels", "predictions", "indices"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},); got {getattr(self, name).shape}")
        if self.adversarials is not None and self.adversarials.shape[0] != n:
            raise ValueError(f"adversarials must have {n} rows; got {self.adversarials.shape[0]}")

    @property
    def n_misclassified(self) -> int:
        return int((self.predictions != self.labels).sum())

    @property
    def clean_accuracy(self) -> float:
        return float((self.predictions == self.labels).mean()) if self.n else math.nan

    def subset(self, mask_or_index: np.ndarray) -> Distances:
        """The points selected by a boolean mask or an index array."""
        sel = np.asarray(mask_or_index)
        adv = None if self.adversarials is None else self.adversarials[sel]
        return replace(self, distances=self.distances[sel], labels=self.labels[sel],
                       predictions=self.predictions[sel], indices=self.indices[sel],
                       adversarials=adv)

    @staticmethod
    def concatenate(parts: list[Distances]) -> Distances:
        """Join results of the same norm and method computed on disjoint point sets.

        Kinds merge soundly: ``exact`` parts joined with ``lower`` parts give ``lower`` (an exact
        distance is also a lower bound), likewise with ``upper``; ``lower`` with ``upper`` is
        refused. Settings are those of the first part, except per-point lists (one entry per
        point in every part), which are joined.
        """
        if not parts:
            raise ValueError("need at least one Distances to concatenate")
        first = parts[0]
        for p in parts[1:]:
            if (p.norm, p.method) != (first.norm, first.method):
                raise ValueError(f"cannot concatenate {p.norm_name}/{p.method} with "
                                 f"{first.norm_name}/{first.method}")
        kinds = {p.kind for p in parts}
        if kinds >= {"lower", "upper"}:
            raise ValueError("cannot concatenate lower bounds with upper bounds")
        kind = next(iter(kinds - {"exact"}), "exact")
        has_adv = all(p.adversarials is not None for p in parts)
        total = sum(p.n for p in parts)
        cost: dict = {}
        for key in first.cost:
            if not all(isinstance(p.cost.get(key), (int, float)) for p in parts):
                continue
            if key.endswith("_per_point"):  # averages: weight by the points of each part
                cost[key] = sum(p.cost[key] * p.n for p in parts) / total if total else 0.0
            else:  # totals (seconds, counts): add up
                cost[key] = sum(p.cost[key] for p in parts)
        settings = dict(first.settings)
        for key, value in first.settings.items():
            if isinstance(value, list) and all(
                    isinstance(p.settings.get(key), list) and len(p.settings[key]) == p.n
                    for p in parts):
                settings[key] = [v for p in parts for v in p.settings[key]]
        return Distances(
            distances=np.concatenate([p.distances for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            predictions=np.concatenate([p.predictions for p in parts]),
            indices=np.concatenate([p.indices for p in parts]),
            norm=first.norm, method=first.method, kind=kind, settings=settings, cost=cost,
            adversarials=np.concatenate([p.adversarials for p in parts]) if has_adv else None,
        )

    # -- plain npz storage (used by the per-batch store; curves have their own JSON format) --
    def save_npz(self, path: str | Path) -> None:
        import json

        arrays = dict(distances=self.distances, labels=self.labels, predictions=self.predictions,
                      indices=self.indices)
        if self.adversarials is not None:
            arrays["adversarials"] = self.adversarials
        meta = dict(norm=self.norm_name, method=self.method, kind=self.kind,
                    settings=self.settings, cost=self.cost)
        np.savez(path, meta=np.array(json.dumps(meta)), **arrays)

    @staticmethod
    def load_npz(path: str | Path) -> Distances:
        import json

        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            return Distances(
                distances=f["distances"], labels=f["labels"], predictions=f["predictions"],
                indices=f["indices"], norm=meta["norm"], method=meta["method"],
                kind=meta["kind"], settings=meta["settings"], cost=meta["cost"],
                adversarials=f["adversarials"] if "adversarials" in f.files else None)
