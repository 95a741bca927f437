"""The standard zoo: one small CNN per training method on Fashion-MNIST (or any 10-class image
set), for benchmarks and reports.

``ZOO`` is the recipe (name -> fit arguments). :func:`train_zoo` trains the models that are not
yet in the output folder (so an interrupted run resumes; each model also checkpoints every
epoch) and saves ``<name>.rcm`` files there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..data.splits import split_record, train_test
from .io import is_model_file, read_meta, save_model
from .loop import fit

__all__ = ["ZOO", "ZOO_THREATS", "DEFAULT_TRAIN_POINTS", "train_zoo", "zoo_path"]

#: training threat models of the zoo (raw [0, 1] pixel units, 28x28 inputs)
ZOO_THREATS = {"linf": 0.1, "l2": 1.0, "l1": 5.0}
_MULTI = ",".join(f"{n}:{e:g}" for n, e in ZOO_THREATS.items())

#: name -> keyword arguments of :func:`robcurves.train.fit` (plus ``train_points``: the number
#: of training points used, all if absent). Sized for about an hour on 2 CPU cores.
ZOO: dict[str, dict] = {
    "st": {"method": "standard", "epochs": 5},
    "at-linf": {"method": "pgd-at", "norm": "linf", "eps": ZOO_THREATS["linf"], "steps": 5,
                "epochs": 3},
    "at-l2": {"method": "pgd-at", "norm": "l2", "eps": ZOO_THREATS["l2"], "steps": 5,
              "epochs": 3},
    "trades": {"method": "trades", "norm": "linf", "eps": ZOO_THREATS["linf"], "steps": 5,
               "beta": 6.0, "epochs": 3},
    "max": {"method": "multi-max", "threats": _MULTI, "steps": 5, "epochs": 2,
            "train_points": 30000},
    "avg": {"method": "multi-avg", "threats": _MULTI, "steps": 5, "epochs": 2,
            "train_points": 30000},
    "ibp": {"method": "ibp", "norm": "linf", "eps": ZOO_THREATS["linf"], "epochs": 8,
            "warmup_start": 1, "warmup": 3, "kappa": 0.0},
}

#: the recipe's default cap on training points: the measured zoo (benchmarks/RESULTS.md)
#: trains all seven models in about 25 minutes on 2 CPU cores with it
DEFAULT_TRAIN_POINTS = 20000


def zoo_path(out: str | Path, name: str) -> Path:
    """Where :func:`train_zoo` saves model ``name``."""
    return Path(out) / f"{name}.rcm"


def train_zoo(data: str | Path = "fmnist", out: str | Path = "zoo", *,
              names: Sequence[str] | None = None, arch: str = "cnn-small",
              train_points: int | None = None, epochs_scale: float = 1.0,
              eval_points: int = 500, seed: int = 0, device: str | None = None,
              progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Path]:
    """Train the zoo models ``names`` (all of :data:`ZOO` by default) into folder ``out``.

    Args:
        data: ``"fmnist"`` (found in the usual places) or any source; models train on its
            train split and are evaluated on its test split, or, for a source without splits,
            on the parts of the seeded hold-out rule (:mod:`robcurves.data.splits`).
        train_points: cap on training points for every model (a seeded random subset);
            ``None`` keeps each recipe's own size.
        epochs_scale: multiplies every recipe's epochs (rounded, at least 1).
        eval_points: test points for the final PGD evaluation recorded in each model.
        seed: seeds training and the subset.

    Returns:
        name -> model file, for every requested model (already present ones are kept).
    """
    names = list(ZOO) if names is None else list(names)
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        raise ValueError(f"unknown zoo models {unknown}; expected some of {', '.join(ZOO)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = train_test(str(data))  # the train split, else a seeded hold-out (recorded)
    order = np.random.default_rng(seed).permutation(train.n)
    files: dict[str, Path] = {}
    for name in names:
        path = zoo_path(out, name)
        if path.exists() and is_model_file(path):
            read_meta(path)
            log(f"{name}: already trained ({path})")
            files[name] = path
            continue
        kw = dict(ZOO[name])
        cap = kw.pop("train_points", None)
        if train_points is not None:
            cap = min(cap or train.n, int(train_points))
        ds = train if cap is None or cap >= train.n else train.subset(np.sort(order[:cap]))
        kw["epochs"] = max(1, round(kw["epochs"] * float(epochs_scale)))
        for key in ("warmup", "warmup_start"):
            if key in kw:
                kw[key] = kw[key] * float(epochs_scale)
        t0 = time.perf_counter()
        kw.setdefault("batch_size", 128)
        module = fit(ds, arch=arch, seed=seed, device=device, progress=progress,
                     eval_data=test, eval_points=eval_points,
                     checkpoint=out / f"{name}.ckpt", **kw)
        module.robcurves_meta["zoo_name"] = name
        module.robcurves_meta["train_data"] = split_record(ds, test, spec=str(data))
        save_model(module, path)
        (out / f"{name}.ckpt").unlink(missing_ok=True)
        m = module.robcurves_meta
        log(f"{name}: {m['method']} on {ds.n} points, {kw['epochs']} epochs in "
            f"{time.perf_counter() - t0:.0f}s; clean {m['clean_accuracy']:.3f}, PGD "
            + ", ".join(f"{k} {v:.3f}" for k, v in m["pgd_accuracy"].items()))
        files[name] = path
    return files
