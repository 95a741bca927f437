"""Adversarial robustness against several perturbation types (Tramèr & Boneh, "Adversarial
training and robustness for multiple perturbations", NeurIPS 2019) on small CNNs.

Six models are trained with :func:`robcurves.train.fit` (or taken from model files): standard
training (``st``), PGD adversarial training in one norm (``at-linf``, ``at-l2``, ``at-l1``) and
the paper's multi-perturbation training on the three at once (``max``: each example on its
worst attack; ``avg``: on the mean loss). Each model is evaluated on the same test points:

* per-norm robustness curves (l_inf, l2, l1) from minimal-norm attacks
  (:func:`robcurves.distances`);
* the union curve (:func:`robcurves.unions.union`) along the threat vector ``s = eps``, so the
  union distance ``min_p d_p / eps_p`` is at most 1 exactly when some ball of the table's radii
  holds an adversarial: union accuracy is the union curve's robust accuracy at ``t = 1``;
* the spatial curve (:func:`robcurves.unions.spatial_distances`: rotations up to 30 degrees and
  translations up to 3 pixels, the exhaustive 31 x 5 x 5 grid) and, as in the paper, the
  l_inf + rotation-translation union at its full size;
* optionally (``affine=True``) the affine threat ``x + sum_k delta_k``,
  ``||delta_k||_{p_k} <= lambda_k t eps_k`` with ``lambda`` on the simplex
  (:func:`robcurves.unions.affine_distances`), on a subset of the points;
* the gradient-masking check (:func:`robcurves.diagnostics.gradient_masking`) in l_inf and l2
  on a smaller subset.

The table is the paper's: accuracy against each threat at fixed radii, and union accuracy, per
model. Attack distances are upper bounds on the minimal distances, so every accuracy in it is an
upper bound on the true robust accuracy (as in the paper).

**Radii for Fashion-MNIST.** The paper uses eps_inf = 0.3, eps_1 = 10, eps_2 = 2 on MNIST.
Fashion-MNIST's classes are much closer (adversarially trained models keep little accuracy at
l_inf 0.3), so the study uses the radii of the project's Fashion-MNIST zoo
(:data:`robcurves.train.ZOO_THREATS`): eps_inf = 0.1, the usual Fashion-MNIST radius (a third
of MNIST's), and eps_2 = 1, eps_1 = 5 (half of MNIST's), so the study's AT and MAX/AVG models are
the zoo's recipes and a zoo file can be passed with ``models``.

:func:`run` writes everything into one folder and resumes there: model files
(``models/NAME.rcm``) and each model's finished parts (``results/NAME.json``, curves in
``curves/``, attack batches in ``work/``) are reused; a folder written with other settings is
refused, except the affine settings: switching the affine threat on later only adds its part,
and other affine points or options recompute that part alone.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..curve import RobustnessCurve
from ..diagnostics import check_masking_budget, gradient_masking
from ..evaluate import distances
from ..train import ZOO_THREATS, is_model_file, load_model, read_meta, save_model
from ..train import fit as train_fit
from ..unions import spatial_distances, union

__all__ = ["MODELS", "NORMS", "MultiConfig", "check_models", "run", "paper_table", "findings"]

#: the threats of the table and of the union, by norm name (raw [0, 1] pixel units)
NORMS = ("linf", "l2", "l1")
_MULTI = ",".join(f"{n}:{ZOO_THREATS[n]:g}" for n in NORMS)

#: model name -> how it is trained (keyword arguments of :func:`robcurves.train.fit`)
MODELS: dict[str, dict] = {
    "st": {"method": "standard", "norm": "linf", "eps": ZOO_THREATS["linf"]},
    "at-linf": {"method": "pgd-at", "norm": "linf", "eps": ZOO_THREATS["linf"]},
    "at-l2": {"method": "pgd-at", "norm": "l2", "eps": ZOO_THREATS["l2"]},
    "at-l1": {"method": "pgd-at", "norm": "l1", "eps": ZOO_THREATS["l1"]},
    "max": {"method": "multi-max", "threats": _MULTI},
    "avg": {"method": "multi-avg", "threats": _MULTI},
}

#: the single-norm specialists and the norm each was trained for
SPECIALISTS = {"at-linf": "linf", "at-l2": "l2", "at-l1": "l1"}


@dataclass(frozen=True)
class MultiConfig:
    """What the study runs (the full setting by default; :meth:`quick` for ``--quick``).

    Attributes:
        data: a source with its own ``train`` and ``test`` splits (``"fmnist"``, ``"digits"``,
            an IDX folder with ``train-*`` and ``t10k-*`` files).
        eps: the table's radius per norm, also the union's threat vector and the training eps.
        arch: architecture of every trained model.
        train_points: training points (a seeded subset of the train split; all if larger).
        epochs, train_steps, batch_size: training (PGD steps per attack in training).
        test_points: the first ``test_points`` of the test split, evaluated in every part.
        attack, attack_kwargs: the minimal-norm attack of the per-norm curves.
        spatial_mode: ``"grid"`` (exhaustive, 775 passes per point) or ``"random"``.
        affine: add the affine threat (``affine_points`` points; ``affine_kwargs``: options
            of :func:`robcurves.unions.affine_distances`, such as ``lambdas`` or ``steps``).
        masking_points: points of the gradient-masking check (0: no check), in
            ``masking_norms``; ``masking_budget`` caps the decision-based attacks' queries
            per point (``None``: their defaults, 5,000 for hsja and 10,000 for boundary).
        seed: seeds the training subset, training and every attack.
    """

    data: str = "fmnist"
    eps: dict = field(default_factory=lambda: {n: ZOO_THREATS[n] for n in NORMS})
    arch: str = "cnn-small"
    train_points: int = 60000
    epochs: int = 5
    train_steps: int = 10
    batch_size: int = 128
    test_points: int = 1000
    attack: str = "auto"
    attack_kwargs: dict = field(default_factory=dict)
    spatial_mode: str = "grid"
    affine: bool = False
    affine_points: int = 500
    affine_kwargs: dict = field(default_factory=dict)
    masking_points: int = 100
    masking_norms: tuple[str, ...] = ("linf", "l2")
    masking_budget: int | None = None
    seed: int = 0

    @classmethod
    def quick(cls, **changes: object) -> MultiConfig:
        """``--quick``: 10,000 training points, 2 epochs of 5-step PGD, 200 test points with
        plain FMN distances, affine on 100 and masking on 20 of them."""
        base = cls(train_points=10000, epochs=2, train_steps=5, test_points=200, attack="fmn",
                   affine_points=100, masking_points=20)
        return replace(base, **changes)

    def __post_init__(self) -> None:
        for k in ("train_points", "epochs", "train_steps", "batch_size", "test_points",
                  "affine_points"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{k} must be an integer >= 1; got {v!r}")
        if isinstance(self.masking_points, bool) or not isinstance(self.masking_points, int) \
                or self.masking_points < 0:
            raise ValueError(f"masking_points must be an integer >= 0; got "
                             f"{self.masking_points!r}")
        if self.masking_budget is not None and int(self.masking_budget) < 1:
            raise ValueError(f"masking_budget must be >= 1; got {self.masking_budget!r}")
        if set(self.eps) != set(NORMS):
            raise ValueError(f"eps must give a radius for each of {', '.join(NORMS)}; got "
                             f"{sorted(self.eps)}")
        for n, e in self.eps.items():
            if not (isinstance(e, (int, float)) and e > 0 and math.isfinite(e)):
                raise ValueError(f"eps[{n!r}] must be a positive number; got {e!r}")
        bad = [n for n in self.masking_norms if n not in ("linf", "l2")]
        if bad:
            raise ValueError(f"masking_norms must be among linf, l2 (the norms of the "
                             f"decision-based attacks); got {bad}")
        if self.spatial_mode not in ("grid", "random"):
            raise ValueError(f"spatial_mode must be 'grid' or 'random'; got "
                             f"{self.spatial_mode!r}")
        from ..attacks import ATTACKS

        if self.attack not in ATTACKS:
            raise ValueError(f"attack must be one of {', '.join(ATTACKS)}; got {self.attack!r}")

    def key(self) -> dict:
        """The settings a finished folder must match: all but ``affine``, ``affine_points`` and
        ``affine_kwargs``, which only add (or, changed, redo) the affine part."""
        d = json.loads(json.dumps(asdict(self)))
        d.pop("affine")
        d.pop("affine_points")
        d.pop("affine_kwargs")
        return d


# ---------------------------------------------------------------------------------- inputs
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_models(models: Mapping[str, str | Path] | None, input_shape: tuple[int, ...] | None
                 = None, num_classes: int | None = None) -> dict[str, Path]:
    """Check user model files (name -> file) before any work: known names, existing robcurves
    model files, and (when given) the data's input shape and class count."""
    out: dict[str, Path] = {}
    for name, file in dict(models or {}).items():
        if name not in MODELS:
            raise ValueError(f"unknown model name {name!r} in models; expected some of "
                             f"{', '.join(MODELS)}")
        path = Path(file).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model file {str(path)!r} for {name!r} does not exist")
        if not is_model_file(path):
            raise ValueError(f"{str(path)!r} (for {name!r}) is not a robcurves model file "
                             "(robcurves train writes them)")
        meta = read_meta(path)
        if input_shape is not None and tuple(meta.get("input_shape", ())) != tuple(input_shape):
            raise ValueError(f"model {name!r} ({path}) takes inputs of shape "
                             f"{tuple(meta.get('input_shape', ()))}; the data has "
                             f"{tuple(input_shape)}")
        if num_classes is not None and meta.get("num_classes") not in (None, num_classes):
            raise ValueError(f"model {name!r} ({path}) has {meta.get('num_classes')} classes; "
                             f"the data has {num_classes}")
        out[name] = path
    return out


def _load_splits(data: str):
    from .. import data as rdata
    from ..data._common import MissingSplitError

    try:
        train = rdata.load(data, split="train")
        test = rdata.load(data, split="test")
    except (TypeError, MissingSplitError, FileNotFoundError) as exc:
        if isinstance(exc, FileNotFoundError) and "split" not in str(exc):
            raise
        raise ValueError(f"data {data!r} has no train split ({exc}); the study trains on a "
                         "train split and evaluates on a test split: give 'fmnist', 'digits' or "
                         "an IDX folder with train-* and t10k-* files") from None
    from ..data.splits import fingerprint

    if fingerprint(train) == fingerprint(test):
        raise ValueError(f"data {data!r} gives the same points for its train and test splits "
                         "(a single file has no train split); give a source with both, such "
                         "as 'fmnist', 'digits' or an IDX folder with train-* and t10k-* files")
    return train, test


# ---------------------------------------------------------------------------------- parts
def _timed(fn: Callable[[], object]) -> tuple[object, dict]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}


def _write_json(path: Path, obj: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_jsonable))
    tmp.replace(path)


def _jsonable(o: object) -> object:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.bool_):
        return bool(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def _train(name: str, cfg: MultiConfig, train, test, out: Path, progress: bool):
    kw = dict(MODELS[name])
    if "threats" in kw:
        kw["threats"] = ",".join(f"{n}:{cfg.eps[n]:g}" for n in NORMS)
    else:
        kw["eps"] = float(cfg.eps[kw["norm"]])
    ds = train
    if cfg.train_points < train.n:
        order = np.random.default_rng(cfg.seed).permutation(train.n)
        ds = train.subset(np.sort(order[:cfg.train_points]))
    ev = test.subset(slice(0, min(test.n, cfg.test_points)))
    return train_fit(ds, arch=cfg.arch, steps=cfg.train_steps, epochs=cfg.epochs,
                     batch_size=cfg.batch_size, eval_data=ev, eval_points=min(ev.n, 100),
                     eval_steps=10, seed=cfg.seed, device="cpu", progress=progress,
                     checkpoint=out / "models" / f"{name}.ckpt", **kw)


def _curve_path(out: Path, name: str, part: str) -> Path:
    return out / "curves" / f"{name}-{part}.json"


def _masking_options(cfg: MultiConfig, norm: str) -> dict | None:
    """Options of the gradient-masking check in ``norm``: ``masking_budget`` for each
    decision-based attack it runs (hsja; in l2 also boundary)."""
    if cfg.masking_budget is None:
        return None
    return {a: {"budget": int(cfg.masking_budget)}
            for a in (("hsja",) if norm == "linf" else ("hsja", "boundary"))}


def _evaluate(name: str, module, cfg: MultiConfig, test, out: Path, res: dict,
              res_path: Path, log: Callable[[str], None]) -> dict:
    """Fill the missing parts of ``res`` (one model's results), saving after each part."""
    import torch

    n = min(test.n, cfg.test_points)
    x, y = test.x[:n], test.y[:n]
    idx = np.arange(n)
    parts = res.setdefault("parts", {})

    def save() -> None:
        _write_json(res_path, res)

    if "clean" not in parts:
        def clean() -> float:
            with torch.no_grad():
                pred = module(torch.as_tensor(x)).argmax(1).numpy()
            return float((pred == y).mean())
        acc, t = _timed(clean)
        parts["clean"] = {"accuracy": acc, **t}
        save()
    for nm in NORMS:
        key = f"norm-{nm}"
        if key in parts:
            continue
        d, t = _timed(lambda nm=nm: distances(
            module, x, y, nm, attack=cfg.attack, seed=cfg.seed, indices=idx,
            store=out / "work" / f"{name}-{nm}", **cfg.attack_kwargs))
        c = RobustnessCurve.from_distances(d, name=name)
        c.save(_curve_path(out, name, nm))
        parts[key] = {"curve": str(_curve_path(out, name, nm).relative_to(out)),
                      "accuracy": float(c.robust_accuracy(cfg.eps[nm])), **t}
        log(f"  {name} {nm}: accuracy {parts[key]['accuracy']:.3f} at eps {cfg.eps[nm]:g} "
            f"({t['seconds']:.0f} s)")
        save()
    if "union" not in parts:
        comps = {nm: RobustnessCurve.load(out / parts[f"norm-{nm}"]["curve"]) for nm in NORMS}
        u = union(comps, scale=cfg.eps, name=name)
        u.save(_curve_path(out, name, "union"))
        parts["union"] = {"curve": str(_curve_path(out, name, "union").relative_to(out)),
                          "accuracy": float(u.robust_accuracy(1.0)),
                          "closest_norm_counts": u.metadata["closest_norm_counts"]}
        save()
    if "spatial" not in parts:
        d, t = _timed(lambda: spatial_distances(module, x, y, mode=cfg.spatial_mode,
                                                seed=cfg.seed, indices=idx))
        c = RobustnessCurve.from_distances(d, name=name)
        c.save(_curve_path(out, name, "spatial"))
        dinf = RobustnessCurve.load(out / parts["norm-linf"]["curve"]).distances
        both = float(np.mean((dinf > cfg.eps["linf"]) & (c.distances > 1.0)))
        parts["spatial"] = {"curve": str(_curve_path(out, name, "spatial").relative_to(out)),
                            "accuracy": float(c.robust_accuracy(1.0)),
                            "linf_spatial_accuracy": both, **t}
        log(f"  {name} spatial: accuracy {parts['spatial']['accuracy']:.3f} "
            f"({t['seconds']:.0f} s)")
        save()
    k = min(n, cfg.affine_points)
    done = parts.get("affine", {})
    if cfg.affine and (done.get("points"), done.get("options")) != (
            k, json.loads(json.dumps(cfg.affine_kwargs))):
        from .. import unions

        d, t = _timed(lambda: unions.affine_distances(
            module, x[:k], y[:k], scale=dict(cfg.eps), bounds=(0.0, 1.0), seed=cfg.seed,
            indices=idx[:k], **cfg.affine_kwargs))
        c = RobustnessCurve.from_distances(d, name=name)
        c.save(_curve_path(out, name, "affine"))
        u = RobustnessCurve.load(out / parts["union"]["curve"])
        ud = u.distances[:k]
        ad = c.distances
        fin = np.isfinite(ud) & np.isfinite(ad) & (ud > 0)
        parts["affine"] = {
            "curve": str(_curve_path(out, name, "affine").relative_to(out)), "points": k,
            "options": json.loads(json.dumps(cfg.affine_kwargs)),
            "accuracy": float(c.robust_accuracy(1.0)),
            "union_accuracy_same_points": float(np.mean(ud > 1.0)),
            "median_affine_over_union": float(np.median(ad[fin] / ud[fin])) if fin.any()
            else math.nan,
            "fraction_smaller_than_union": float(np.mean(ad < ud)), **t}
        log(f"  {name} affine: accuracy {parts['affine']['accuracy']:.3f} on {k} points "
            f"({t['seconds']:.0f} s)")
        save()
    m = min(n, cfg.masking_points)
    for nm in cfg.masking_norms if m else ():
        key = f"masking-{nm}"
        if key in parts:
            continue
        opts = _masking_options(cfg, nm)
        g, t = _timed(lambda nm=nm, opts=opts: gradient_masking(module, x[:m], y[:m], nm,
                                                                seed=cfg.seed, options=opts))
        parts[key] = {"points": m, "flagged": bool(g.flagged), "reasons": list(g.reasons),
                      "fraction_smaller": float(g.fraction_smaller),
                      "median_ratio": float(g.median_ratio), "p_value": float(g.p_value),
                      "decision_attacks": list(g.decision_attacks), **t}
        log(f"  {name} masking {nm}: flagged {g.flagged} ({t['seconds']:.0f} s)")
        save()
    return res


# ---------------------------------------------------------------------------------- table
#: multiples of the table's radius at which "near the training eps" is judged
NEAR = (0.5, 1.0, 1.5)


def paper_table(results: Mapping[str, dict], cfg: MultiConfig, out: str | Path) -> list[dict]:
    """One row per model: clean accuracy, accuracy against each threat at its radius, union
    accuracy (all three l_p balls), spatial and l_inf + spatial accuracy, affine accuracy (when
    computed) and the masking flags; ``near`` holds each norm's accuracy at :data:`NEAR`
    times its radius (read from the curves in ``out``)."""
    rows = []
    for name, res in results.items():
        p = res["parts"]
        near = {}
        for nm in NORMS:
            c = RobustnessCurve.load(Path(out) / p[f"norm-{nm}"]["curve"])
            near[nm] = {f"{k:g}": float(c.robust_accuracy(k * cfg.eps[nm])) for k in NEAR}
        row = {"model": name, "source": res.get("source", "trained"),
               "clean": p["clean"]["accuracy"],
               **{nm: p[f"norm-{nm}"]["accuracy"] for nm in NORMS}, "near": near,
               "union": p["union"]["accuracy"], "spatial": p["spatial"]["accuracy"],
               "linf_spatial": p["spatial"]["linf_spatial_accuracy"]}
        if cfg.affine and "affine" in p:
            row["affine"] = p["affine"]["accuracy"]
            row["affine_union_same_points"] = p["affine"]["union_accuracy_same_points"]
        row["masking"] = {nm: p[f"masking-{nm}"]["flagged"] for nm in cfg.masking_norms
                          if f"masking-{nm}" in p}
        rows.append(row)
    return rows


def findings(rows: list[dict], cfg: MultiConfig) -> dict:
    """The paper's questions, answered from the table (accuracies at the table's radii)."""
    by = {r["model"]: r for r in rows}
    out: dict = {"specialists": {}}
    for model, nm in SPECIALISTS.items():
        if model not in by:
            continue
        acc = {m: r[nm] for m, r in by.items()}
        top = max(acc.values())
        near = {k: max(by, key=lambda m, k=k: by[m]["near"][nm][k]) for k in
                by[model]["near"][nm]}
        out["specialists"][model] = {
            "norm": nm, "eps": cfg.eps[nm], "accuracy": acc[model],
            "best_models": [m for m in acc if acc[m] == top],
            "rank": 1 + sum(a > acc[model] for a in acc.values()),  # ties share a rank
            "best": acc[model] == top,
            "best_near": {k: by[m]["near"][nm][k] <= by[model]["near"][nm][k]
                          for k, m in near.items()}}
    top = max(r["union"] for r in rows)
    best = [m for m in by if by[m]["union"] == top]
    out["best_union"] = {"models": best, "accuracy": top,
                         "is_max_or_avg": bool(set(best) & {"max", "avg"})}
    if {"at-linf", "at-l1", "st"} <= set(by):
        out["linf_model_in_l1"] = {
            "at-linf": by["at-linf"]["l1"], "st": by["st"]["l1"], "at-l1": by["at-l1"]["l1"],
            "weaker_than_at_l1": by["at-linf"]["l1"] < by["at-l1"]["l1"],
            "weaker_than_st": by["at-linf"]["l1"] < by["st"]["l1"]}
    out["masking_flagged"] = [f"{r['model']} ({nm})" for r in rows
                              for nm, f in r["masking"].items() if f]
    return out


# ---------------------------------------------------------------------------------- run
def run(out: str | Path, config: MultiConfig | None = None, *,
        models: Mapping[str, str | Path] | None = None, progress: bool = True,
        log: Callable[[str], None] = print) -> dict:
    """Train (or load) the six models, evaluate them and write ``multi.html``, ``multi.md``,
    ``results.json`` and ``figures/`` into ``out``; returns the results (as in the JSON).

    Args:
        models: model name (of :data:`MODELS`) -> robcurves model file, used instead of
            training that model.

    Raises:
        ValueError: an unknown model name, a file that is not a model file or does not fit the
            data, data without a train split, or a folder written with other settings; all
            before any training or attack.
    """
    cfg = config or MultiConfig()
    out = Path(out)
    given = check_models(models)
    train, test = _load_splits(cfg.data)
    check_models(given, train.input_shape, train.num_classes)
    if cfg.masking_points:
        for nm in cfg.masking_norms:  # a budget too small for the attacks' start: refuse now
            check_masking_budget(int(np.prod(train.input_shape)), nm, _masking_options(cfg, nm))
    sources = {n: ({"file": str(given[n].resolve()), "sha256": _sha256(given[n])}
                   if n in given else "trained") for n in MODELS}
    key = {**cfg.key(), "models": sources}
    for sub in ("models", "results", "curves", "work", "figures"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    key_file = out / "settings.json"
    if key_file.exists():
        old = json.loads(key_file.read_text())
        if old != key:
            diff = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
            raise ValueError(f"{out} holds a study run with other settings (differs in "
                             f"{', '.join(diff)}); use another --out or delete it")
    _write_json(key_file, key)
    t_start, c_start = time.perf_counter(), time.process_time()
    results: dict[str, dict] = {}
    for name in MODELS:
        res_path = out / "results" / f"{name}.json"
        res = json.loads(res_path.read_text()) if res_path.exists() else {
            "model": name, "source": sources[name]}
        if name in given:
            module = load_model(given[name], device="cpu")
        else:
            mfile = out / "models" / f"{name}.rcm"
            if mfile.exists():
                module = load_model(mfile, device="cpu")
            else:
                log(f"{name}: training ({MODELS[name]['method']})")
                module, t = _timed(lambda name=name: _train(name, cfg, train, test, out,
                                                            progress))
                save_model(module, mfile)
                (out / "models" / f"{name}.ckpt").unlink(missing_ok=True)
                meta = module.robcurves_meta
                res["train"] = {"points": int(meta["data_n"]), "epochs": cfg.epochs,
                                "method": meta["method"], "threats": meta["threats"],
                                "train_seconds": float(meta["train_seconds"]),
                                "pgd_accuracy": meta["pgd_accuracy"], **t}
                _write_json(res_path, res)
                log(f"{name}: trained in {t['seconds']:.0f} s")
        module.eval()
        res = _evaluate(name, module, cfg, test, out, res, res_path, log)
        results[name] = res
    rows = paper_table(results, cfg, out)
    summary = {"config": json.loads(json.dumps(asdict(cfg))), "models_source": sources,
               "data": {"name": train.name, "train_n": train.n, "test_n": test.n,
                        "evaluated": min(test.n, cfg.test_points)},
               "table": rows, "findings": findings(rows, cfg), "results": results,
               "times": _times(results),
               "this_run": {"seconds": time.perf_counter() - t_start,
                            "cpu_seconds": time.process_time() - c_start}}
    from ._multi_page import write_page

    write_page(out, cfg, summary)
    _write_json(out / "results.json", summary)
    return summary


def _times(results: Mapping[str, dict]) -> dict:
    """Wall and CPU seconds per part, summed over models (as measured when each was made)."""
    tot: dict[str, dict] = {}
    for res in results.values():
        items = [("train", res.get("train", {}))]
        items += [(k.split("-")[0] if k.startswith("masking") else k, v)
                  for k, v in res["parts"].items()]
        for part, v in items:
            if "seconds" not in v:
                continue
            part = "attacks (l_p curves)" if part.startswith("norm") else part
            t = tot.setdefault(part, {"seconds": 0.0, "cpu_seconds": 0.0})
            t["seconds"] += v["seconds"]
            t["cpu_seconds"] += v["cpu_seconds"]
    return tot
