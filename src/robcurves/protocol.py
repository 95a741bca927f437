"""Robust accuracy at one eps with the protocol papers and leaderboards report.

``protocol="autoattack"`` is the standard AutoAttack sequence (Croce & Hein, ICML 2020):
APGD-CE (100 steps, random start), APGD-T (targeted DLR loss, 100 steps towards each of the
9 classes scoring highest on the clean input after the label), FAB-T (targeted FAB, 100 steps
per target class, the same targets) and Square (5000 queries, ``p_init = 0.8``). Each attack
runs only on the points still robust; a point counts as broken by the first attack whose
adversarial passes the re-check: inside the box (:func:`robcurves.evaluate.verify_adversarials`),
misclassified when evaluated again, and inside the eps ball up to float32 rounding of
``x + delta`` (one float32 epsilon times the input's largest magnitude per coordinate, times
``sqrt(D)`` for l2). FAB is a minimal-norm attack here: its adversarial counts when its
distance is at most eps.

The attacks are robcurves' own (:mod:`robcurves.attacks`), not the reference code; see their
modules for the differences from the published versions. A model with fewer than 4 classes
skips APGD-T (the targeted DLR loss needs 4) and says so in ``skipped``.

A :class:`RobustAccuracy` keeps the per-point results, labels and clean predictions, and saves
as JSON (:meth:`RobustAccuracy.to_dict`; :func:`robcurves.report.save_protocol` adds the model
name): the comparison report puts it next to the model's curve on the same points
(``build_report(protocol=...)``, ``robcurves compare --autoattack``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ._norms import NormLike, norm_name, parse_norm
from ._threads import using_threads
from .attacks import apgd, fab, square
from .evaluate import _as_inputs, check_finite_logits, probe_model, verify_adversarials
from .model import Bounds, Classifier, as_classifier

__all__ = ["RobustAccuracy", "robust_accuracy", "PROTOCOLS"]

#: the ``format`` field of a saved :class:`RobustAccuracy` (:meth:`RobustAccuracy.to_dict`)
FORMAT = "robcurves-robust-accuracy"

#: protocol name -> the attacks it runs, in order
PROTOCOLS: dict[str, tuple[str, ...]] = {
    "autoattack": ("apgd-ce", "apgd-t", "fab-t", "square"),
}


@dataclass(frozen=True)
class RobustAccuracy:
    """Robust accuracy at one eps under a fixed-eps protocol.

    Attributes:
        accuracy: fraction of the points classified correctly and not broken within eps
            (robust *accuracy*, in [0, 1]).
        clean_accuracy: fraction classified correctly without perturbation.
        robust: ``(N,)`` bool, True where no attack of the protocol broke the point.
        broken_by: ``(N,)`` str: ``""`` where robust, ``"clean"`` where misclassified
            unperturbed, else the attack that broke the point first.
        counts: points per entry of ``broken_by`` (``"robust"`` for ``""``), in protocol order.
        forward_passes, backward_passes: model passes (samples) the attacks spent, in total.
        seconds: wall time.
        eps: the radius, in raw input units; norm: the float p (``inf`` or ``2.0``).
        protocol: its name; skipped: attacks of the protocol that could not run (with why).
        labels, predictions: ``(N,)`` int, the true labels and the clean predictions (None
            when not known): with them a report checks that a curve is of the same points
            and model.
        metadata: what the caller knows of the model and points (JSON-serialisable;
            ``robcurves eval`` and ``robcurves compare --autoattack`` record ``model`` and
            ``data`` as ``robcurves curve`` does).
    """

    accuracy: float
    clean_accuracy: float
    robust: np.ndarray
    broken_by: np.ndarray
    counts: dict[str, int]
    forward_passes: int
    backward_passes: int
    seconds: float
    eps: float
    norm: float
    protocol: str = "autoattack"
    skipped: dict[str, str] = field(default_factory=dict)
    labels: np.ndarray | None = None
    predictions: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.robust.shape[0])

    @property
    def norm_name(self) -> str:
        return norm_name(self.norm)

    def to_dict(self) -> dict:
        """JSON-ready data, per-point results included; :meth:`from_dict` reads it."""
        def ints(a: np.ndarray | None) -> list[int] | None:
            return None if a is None else [int(v) for v in a]

        return {"format": FORMAT, "version": 1, "protocol": self.protocol,
                "norm": self.norm_name, "eps": self.eps, "n": self.n,
                "accuracy": self.accuracy, "clean_accuracy": self.clean_accuracy,
                "counts": dict(self.counts), "skipped": dict(self.skipped),
                "forward_passes": self.forward_passes, "backward_passes": self.backward_passes,
                "seconds": self.seconds, "broken_by": [str(b) for b in self.broken_by],
                "labels": ints(self.labels), "predictions": ints(self.predictions),
                "metadata": self.metadata}

    @classmethod
    def from_dict(cls, obj: dict, origin: str = "<dict>") -> RobustAccuracy:
        """Read what :meth:`to_dict` wrote; a clear error on anything else (a file of an older
        ``robcurves eval``, without per-point results, included)."""
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise ValueError(f"{origin} is not a saved robust accuracy (expected format "
                             f"{FORMAT!r}, as `robcurves eval --out` and `robcurves compare "
                             "--autoattack` write)")
        if obj.get("version") != 1:
            raise ValueError(f"{origin} has robust-accuracy format version "
                             f"{obj.get('version')!r}; this robcurves reads version 1")
        try:
            broken_by = np.asarray([str(b) for b in obj["broken_by"]], dtype=str)
            n = int(obj["n"])
            if broken_by.shape != (n,):
                raise ValueError(f"broken_by has {broken_by.shape[0]} entries, n is {n}")
            arrays = {}
            for key in ("labels", "predictions"):
                v = obj.get(key)
                arrays[key] = None if v is None else np.asarray(v, dtype=np.int64)
                if v is not None and arrays[key].shape != (n,):
                    raise ValueError(f"{key} has {len(v)} entries, n is {n}")
            robust = broken_by == ""
            accuracy = float(obj["accuracy"])
            if accuracy != float(robust.mean()):
                raise ValueError(f"accuracy {accuracy} is not the share of robust points "
                                 f"in broken_by ({float(robust.mean())})")
            return cls(accuracy=accuracy, clean_accuracy=float(obj["clean_accuracy"]),
                       robust=robust, broken_by=broken_by,
                       counts={str(k): int(v) for k, v in obj["counts"].items()},
                       forward_passes=int(obj["forward_passes"]),
                       backward_passes=int(obj["backward_passes"]),
                       seconds=float(obj["seconds"]), eps=float(obj["eps"]),
                       norm=parse_norm(obj["norm"]), protocol=str(obj["protocol"]),
                       skipped=dict(obj.get("skipped") or {}), **arrays,
                       metadata=dict(obj.get("metadata") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{origin} is not a valid saved robust accuracy: "
                             f"{type(exc).__name__}: {exc}") from None

    def summary(self) -> str:
        """A few lines: the accuracies and what broke how many points."""
        lines = [f"{self.protocol} {norm_name(self.norm)} eps={self.eps:.6g} n={self.n}: robust "
                 f"accuracy {self.accuracy:.4f} (clean {self.clean_accuracy:.4f})"]
        for name, k in self.counts.items():
            lines.append(f"  {name:>8}: {k}")
        for name, why in self.skipped.items():
            lines.append(f"  {name} skipped: {why}")
        return "\n".join(lines)


def robust_accuracy(model: nn.Module | Classifier, x: np.ndarray | torch.Tensor,
                    y: np.ndarray | torch.Tensor, norm: NormLike, eps: float,
                    protocol: str = "autoattack", *, bounds: Bounds = None,
                    attacks: Sequence[str] | None = None, n_queries: int = 5000,
                    batch_size: int | None = None, seed: int = 0,
                    threads: int | None = None) -> RobustAccuracy:
    """Robust accuracy at ``eps`` under ``protocol`` (per-point worst case over its attacks).

    Args:
        model: a wrapped :class:`~robcurves.model.Classifier` or a ``torch.nn.Module``
            (wrapped with ``bounds``, default ``(0, 1)``).
        x, y: raw inputs ``(N, ...)`` inside the model's bounds and integer labels ``(N,)``.
        norm: ``linf`` or ``l2`` (the protocol's attacks cover those two).
        eps: radius in raw input units, > 0.
        protocol: ``"autoattack"`` (see the module docstring).
        attacks: run only these attacks of the protocol (in the protocol's order), e.g.
            ``["square"]``; default all.
        n_queries: Square's query budget per point (5000 in the standard protocol).
        batch_size: points attacked together (default: the model's batch size).
        seed: seeds the random starts (APGD) and the random search (Square); batch ``k``
            uses ``seed`` plus its start index.
        threads: torch CPU threads for this call (default: leave torch's setting).

    Raises:
        ValueError: an unknown protocol, a norm it does not cover, eps not > 0, bad inputs or
            a model that does not fit them, before any attack work.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of "
                         f"{', '.join(sorted(PROTOCOLS))}")
    names = PROTOCOLS[protocol]
    if attacks is not None:
        unknown = [a for a in attacks if a not in names]
        if unknown or not attacks:
            raise ValueError(f"attacks must be a non-empty subset of {', '.join(names)}; got "
                             f"{list(attacks)!r}")
        names = tuple(a for a in names if a in attacks)
    if int(n_queries) < 1:
        raise ValueError(f"n_queries must be >= 1; got {n_queries}")
    p = parse_norm(norm)
    if p not in (math.inf, 2.0):
        raise ValueError(f"protocol {protocol!r} supports norms linf and l2; got "
                         f"{norm_name(p)}")
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"eps must be a number > 0; got {eps!r}") from None
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a finite number > 0; got {eps}")
    clf = as_classifier(model, bounds)
    xs, ys = _as_inputs(x, y)
    if xs.shape[0] == 0:
        raise ValueError("no points to evaluate (x is empty)")
    clf.check_inputs(xs)
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    with using_threads(threads):
        k = probe_model(clf, xs)
        check_finite_logits(clf.predict_logits(xs))
        if ys.min() < 0 or ys.max() >= k:
            raise ValueError(f"labels must lie in 0..{k - 1} for a model with {k} outputs; "
                             f"found {int(ys.min())}..{int(ys.max())}")
        return _run(clf, xs, ys, p, eps, protocol, names, int(n_queries),
                    int(batch_size or clf.batch_size), seed, k)


def _run(clf: Classifier, xs: np.ndarray, ys: np.ndarray, p: float, eps: float, protocol: str,
         names: tuple[str, ...], n_queries: int, bs: int, seed: int, k: int) -> RobustAccuracy:
    t0 = time.perf_counter()
    f0, b0 = clf.n_forward, clf.n_backward
    n = xs.shape[0]
    broken_by = np.full(n, "", dtype=object)
    correct = np.zeros(n, dtype=bool)
    predictions = np.zeros(n, dtype=np.int64)
    skipped = {"apgd-t": f"the targeted DLR loss needs 4 classes or more; the model has {k}"
               } if k < 4 and "apgd-t" in names else {}
    for start in range(0, n, bs):
        xb = torch.from_numpy(np.ascontiguousarray(xs[start:start + bs])).to(clf.device)
        yb = torch.from_numpy(ys[start:start + bs]).to(clf.device)
        with torch.no_grad():
            z = clf.logits(xb)
        ok = (z.argmax(1) == yb).cpu().numpy()
        correct[start:start + len(ok)] = ok
        predictions[start:start + len(ok)] = z.argmax(1).cpu().numpy()
        broken_by[start:start + len(ok)][~ok] = "clean"
        targets = _targets(z, yb)
        robust = torch.from_numpy(ok).to(clf.device)
        for name in names:
            if name in skipped:
                continue
            for attack in _attacks(name, p, eps, seed + start, targets, n_queries):
                rows = robust.nonzero().squeeze(1)
                if rows.numel() == 0:
                    break
                adv = attack(clf, xb[rows], yb[rows], rows)
                hit = _verified(clf, xb[rows], yb[rows], adv, p, eps)
                hit_rows = rows[torch.from_numpy(hit).to(rows.device)]
                robust[hit_rows] = False
                broken_by[start + hit_rows.cpu().numpy()] = name
    robust_np = broken_by == ""
    counts = {"clean": int((broken_by == "clean").sum())}
    counts.update({name: int((broken_by == name).sum()) for name in names})
    counts["robust"] = int(robust_np.sum())
    return RobustAccuracy(
        accuracy=float(robust_np.mean()), clean_accuracy=float(correct.mean()),
        robust=robust_np, broken_by=broken_by.astype(str), counts=counts,
        forward_passes=clf.n_forward - f0, backward_passes=clf.n_backward - b0,
        seconds=time.perf_counter() - t0, eps=eps, norm=p, protocol=protocol,
        skipped=skipped, labels=ys.astype(np.int64), predictions=predictions)


def _targets(z: torch.Tensor, y: torch.Tensor, n_targets: int = 9) -> list[torch.Tensor]:
    """Per rank r = 1..min(9, K - 1), the class scoring r-th highest on the clean input
    among the classes other than the label."""
    order = z.detach().clone()
    order.scatter_(1, y[:, None], -torch.inf)
    top = order.topk(min(n_targets, z.shape[1] - 1), dim=1).indices
    return [top[:, r] for r in range(top.shape[1])]


def _attacks(name: str, p: float, eps: float, seed: int, targets: list[torch.Tensor],
             n_queries: int):
    """The runs of one protocol stage, each ``run(clf, x, y, rows) -> adversarials``."""
    if name == "apgd-ce":
        return [lambda clf, x, y, rows: apgd(clf, x, y, p, eps=eps, steps=100, loss="ce",
                                             seed=seed)]
    if name == "apgd-t":
        return [lambda clf, x, y, rows, t=t: apgd(clf, x, y, p, eps=eps, steps=100,
                                                  loss="dlr-targeted", targets=t[rows],
                                                  seed=seed)
                for t in targets]
    if name == "fab-t":
        return [lambda clf, x, y, rows, t=t: fab(clf, x, y, p, steps=100, targets=t[rows],
                                                 seed=seed)
                for t in targets]
    if name == "square":
        return [lambda clf, x, y, rows: square(clf, x, y, p, eps=eps, n_queries=n_queries,
                                               p_init=0.8, seed=seed)]
    raise ValueError(f"unknown protocol attack {name!r}")


def _verified(clf: Classifier, x: torch.Tensor, y: torch.Tensor, adv: torch.Tensor, p: float,
              eps: float) -> np.ndarray:
    """Per point: ``adv`` lies in the box, is misclassified on re-evaluation and lies inside
    the eps ball (up to float32 rounding of ``x + delta``)."""
    d, _, _ = verify_adversarials(clf, x, y, adv, p)
    flat = x.detach().cpu().reshape(x.shape[0], -1).double()
    scale = flat.abs().amax(1).clamp_min(1.0).numpy()
    slack = np.finfo(np.float32).eps * scale * (1.0 if p == math.inf else math.sqrt(flat.shape[1]))
    return np.isfinite(d) & (d > 0) & (d <= eps + slack)
