"""Training and held-out parts of a data set, and which points a model was trained on.

A data set with its own training split (Fashion-MNIST's ``train-*`` files, CIFAR's
``data_batch_*``, ``x_train`` in an npz...) trains on it and is evaluated on its test split. A data
set without one (the embedded digits, a folder holding only MNIST's test files, an npz of ``x``/
``y``) is split by a **seeded hold-out rule**: the positions ``0..N-1`` are shuffled by
``numpy.random.default_rng(seed).permutation(N)``; the first ``round(fraction * N)`` shuffled
positions (default 20%, seed 0) are held out for evaluation, the others are for training; both
parts keep the data set's order. The rule is recorded with the model (:func:`split_record`), so
a curve on the training points is refused (:func:`training_points`).
"""

from __future__ import annotations

import hashlib

import numpy as np

from ._common import MissingSplitError
from .dataset import Dataset
from .registry import load

__all__ = ["HOLDOUT_FRACTION", "HOLDOUT_SEED", "MissingSplitError", "holdout_indices", "holdout",
           "train_test", "split_record", "held_out", "training_points", "fingerprint",
           "describe"]

HOLDOUT_FRACTION = 0.2
HOLDOUT_SEED = 0
_PARTS = ("train", "test")


def fingerprint(ds: Dataset) -> str:
    """A hash of a data set's inputs and labels (the same as ``fingerprint_data(x, y)``)."""
    from ..evaluate import fingerprint_data

    return fingerprint_data(ds.x, ds.y)


def holdout_indices(n: int, *, seed: int = HOLDOUT_SEED, fraction: float = HOLDOUT_FRACTION
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(train, held_out)`` of the seeded hold-out rule (module docstring), sorted."""
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"hold-out fraction must lie strictly between 0 and 1; got {fraction}")
    n_out = int(round(float(fraction) * n))
    if n < 2 or n_out < 1 or n_out >= n:
        raise ValueError(f"cannot hold out {fraction:g} of {n} points: each part needs at least "
                         "one point")
    order = np.random.default_rng(int(seed)).permutation(int(n))
    return np.sort(order[n_out:]), np.sort(order[:n_out])


def _indices_sha(idx: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(idx, dtype=np.int64).tobytes()).hexdigest()[:16]


def holdout(ds: Dataset, part: str, *, seed: int = HOLDOUT_SEED,
            fraction: float = HOLDOUT_FRACTION) -> Dataset:
    """The ``"train"`` or ``"test"`` (held-out) part of ``ds`` under the seeded hold-out rule.

    The result is named ``"<name>:<part>"`` and its ``info["split"]`` records the rule (seed,
    fraction, the whole set's name, size and fingerprint, a hash of the positions taken).
    """
    if part not in _PARTS:
        raise ValueError(f"part must be 'train' or 'test'; got {part!r}")
    train_idx, test_idx = holdout_indices(ds.n, seed=seed, fraction=fraction)
    idx = train_idx if part == "train" else test_idx
    sub = ds.subset(idx)
    info = dict(sub.info)
    info["split"] = {"part": part, "rule": "holdout", "seed": int(seed),
                     "fraction": float(fraction), "of": ds.name, "of_source": ds.source,
                     "of_n": ds.n, "of_fingerprint": fingerprint(ds),
                     "indices_sha256": _indices_sha(idx)}
    return Dataset(x=sub.x, y=sub.y, name=f"{ds.name}:{part}", classes=sub.classes,
                   source=sub.source, info=info)


def train_test(source: str, *, seed: int = HOLDOUT_SEED, fraction: float = HOLDOUT_FRACTION
               ) -> tuple[Dataset, Dataset]:
    """The training and the held-out part of a data source (a name or a path).

    Uses the source's own ``train``/``test`` splits where it has both (and they differ); else
    the seeded hold-out rule on the whole set (module docstring). Each part's ``info["split"]``
    says which rule made it.
    """
    try:
        train = load(source, split="train")
        test = load(source, split="test")
    except (FileNotFoundError, TypeError, MissingSplitError):
        train = test = None
    if train is not None and test is not None and "split" in train.info:
        return train, test  # the loader applied the hold-out rule itself (digits)
    if train is not None and test is not None and fingerprint(train) != fingerprint(test):
        for ds, part in ((train, "train"), (test, "test")):
            ds.info["split"] = {"part": part, "rule": "native"}
        return train, test
    whole = load(source)
    return (holdout(whole, "train", seed=seed, fraction=fraction),
            holdout(whole, "test", seed=seed, fraction=fraction))


def split_record(train: Dataset, test: Dataset | None = None, *, spec: str | None = None
                 ) -> dict:
    """What a model file records about the points it was trained on (JSON-ready).

    ``spec`` is the source as the user gave it (``"digits"``, a path), so the held-out part
    can be found again (:func:`held_out`).
    """
    rec = {"name": train.name, "source": train.source, "n": train.n,
           "fingerprint": fingerprint(train), **dict(train.info.get("split") or {})}
    rec.pop("part", None)
    if spec is not None:
        rec["spec"] = str(spec)
    if test is not None:
        rec["held_out"] = {"name": test.name, "n": test.n, "fingerprint": fingerprint(test)}
    return rec


def held_out(record: dict) -> Dataset:
    """The held-out part named by a model's :func:`split_record` (needs its ``spec``)."""
    spec = record.get("spec")
    if not spec:
        raise ValueError("the model does not record where its data came from (no 'spec'); "
                         "pass the evaluation data explicitly")
    if record.get("rule") == "holdout":
        test = holdout(load(spec), "test", seed=record["seed"], fraction=record["fraction"])
    else:
        test = load(spec, split="test")
    want = (record.get("held_out") or {}).get("fingerprint")
    if want is not None and fingerprint(test) != want:
        raise ValueError(f"the held-out part of {spec!r} ({test.name}, {test.n} points) is not "
                         f"the one recorded with the model ({record['held_out']['name']}, "
                         f"{record['held_out']['n']} points): the data changed on disk")
    return test


def training_points(record: dict | None, ds: Dataset, n: int | None = None) -> int:
    """How many of the first ``n`` points of ``ds`` a model with ``record`` was trained on.

    Recognises the training set itself and, for the hold-out rule, the whole set it was taken
    from (by fingerprint). Returns 0 when ``record`` is empty or the data is another set.
    """
    if not record:
        return 0
    n = ds.n if n is None else min(int(n), ds.n)
    fp = fingerprint(ds)
    if fp == record.get("fingerprint"):
        return n
    if record.get("rule") == "holdout" and fp == record.get("of_fingerprint"):
        train_idx, _ = holdout_indices(ds.n, seed=record["seed"], fraction=record["fraction"])
        return int(np.count_nonzero(train_idx < n))
    return 0


def describe(ds: Dataset, n: int | None = None) -> dict:
    """What a curve records about its data: the first ``n`` points of ``ds`` (JSON-ready).

    ``name``, ``source``, ``split`` (and ``split_rule`` for a split made here), ``n``,
    ``first_index``, the ``fingerprint`` of the whole set and the ``points_fingerprint`` of the
    points evaluated. :func:`robcurves.compare` refuses curves whose data differ; pass this as
    ``metadata={"data": describe(ds, n)}`` to ``RobustnessCurve.from_distances``.
    """
    n = ds.n if n is None else min(int(n), ds.n)
    meta = {"name": ds.name, "source": ds.source, "split": None, "n": n, "first_index": 0,
            "fingerprint": fingerprint(ds),
            "points_fingerprint": fingerprint(ds.subset(slice(0, n))),
            **{k: v for k, v in ds.info.items() if isinstance(v, (int, float, str))}}
    if isinstance(ds.info.get("split"), dict):
        meta["split"] = ds.info["split"].get("part")
        meta["split_rule"] = ds.info["split"]
    return meta
