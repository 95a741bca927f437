"""The experiment of Risse, Göpfert & Göpfert, "How to compare adversarial robustness of
classifiers from a global perspective", in one resumable run: :func:`reproduce` trains the model
families on the data found locally, measures their robustness curves, and writes one page
(``reproduce.html`` and ``reproduce.md``) with one section per figure or table of the paper.
Each caption says what the paper reports and what this run measured; every measured number is
computed from the saved curves and distances, never written in by hand.

Sections: Fig. 2 and Table 1 (the families' l_inf and l2 curves on Fashion-MNIST, point-wise
table with rank flips and their significance), Theorems 1 and 2 and Example 1
(:mod:`robcurves.studies.paper`), Fig. 5 and Table 2 (inter-class distances of every data set
found), Fig. 7 (galleries of minimal adversarials), Fig. 3 (the robust family's l_inf models
across data sets, with the kink diagnostic), Fig. 4 (l_inf- against l2-trained models in both
norms, with fitted scale factors) and Fig. 8 (a wide ResNet, only from a checkpoint the user
has on disk).

Everything is saved under ``OUT``: ``reproduce.json`` (the settings; a rerun with other settings
is refused), ``models/*.rcm``, ``curves/*.json``, ``interclass/*.npy``, ``plots/*.png``,
``results.json``, and ``timings.json`` (wall and CPU seconds of every computed stage, CPU
counting this process and its children; the page's Times section). A rerun reuses every
finished model, curve, distance file and gallery, and keeps their times.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["PAPER_METHODS", "METHOD_LABELS", "DATASETS", "QUICK", "FULL", "check_methods",
           "find_datasets", "reproduce"]

#: the paper's five model families, as ``robcurves.train`` names them
PAPER_METHODS = ("standard", "pgd-at", "kw", "mmr-at", "mmr-universal")
#: the paper's names for them
METHOD_LABELS = {"standard": "ST", "pgd-at": "AT", "kw": "KW", "mmr-at": "MMR+AT",
                 "mmr-universal": "MMR-Universal", "trades": "TRADES", "ibp": "IBP"}

#: data sets looked for, in page order: file or folder under a data folder, the model's
#: training eps in l_inf and l2 (this study's choice for the threat models the models are
#: trained for; the l_inf values are the common ones of the MMR papers for these sets), and
#: whether models are trained on it (Tiny-ImageNet only enters the inter-class distances)
DATASETS = {
    "fmnist": {"label": "Fashion-MNIST", "path": "fashion-mnist", "linf": 0.1, "l2": 1.0,
               "train": True},
    "mnist": {"label": "MNIST", "path": "mnist", "linf": 0.1, "l2": 1.0, "train": True},
    "gtsrb": {"label": "GTSRB", "path": "gtsrb/gtsrb_test_32x32.npz", "linf": 4 / 255,
              "l2": 0.25, "train": True, "color": True},
    "cifar10": {"label": "CIFAR-10", "path": "cifar10-jpeg/cifar10_test_jpg.tar.gz",
                "linf": 2 / 255, "l2": 0.1, "train": True, "color": True},
    "tiny-imagenet": {"label": "Tiny-ImageNet", "path":
                      "tiny-imagenet-200/tiny-imagenet-200-val.tar", "train": False},
    "uci-har": {"label": "UCI HAR", "path": "uci-har", "train": False},
}

#: What the paper reports, per section, with where it was read. The paper's full text was not
#: reachable here (a search of public pages found the abstracts of the arXiv versions and of
#: the ICANN 2021 version, and the authors' repository "adversarial-examples-and-where-to-find-
#: them" with its README and notebooks): statements marked "per issue 14" paraphrase that
#: issue's summary of a figure and were not checked against the paper's text; no number of the
#: paper is given except Table 2's, as the authors' notebook prints it.
PAPER_SAYS = {
    "fig2": ("Abstract: point-wise measures at one threat model fail to capture global "
             "properties needed to compare classifiers reliably; robustness curves uncover "
             "them. Per issue 14, the curves of ST, AT, KW, MMR+AT and MMR-Universal intersect, "
             "so a point-wise table at one eps can rank the models either way, and the l_inf "
             "and l2 pictures differ. The authors' notebook (rob_curves_model_comparison) "
             "draws these curves on 10,000 MNIST test points for published models (Croce et "
             "al.'s ST, AT and MMR+AT, Wong & Kolter's KW, each for l_inf and l2, and "
             "MMR-Universal); here the models are trained on Fashion-MNIST. Table 1's values "
             "were not available here."),
    "theorem1": ("For any finite set of thresholds there are two classifiers whose "
                 "robustness curves cross at exactly those thresholds (Appendix A). Issue 14 "
                 "reports that the published proof swaps the roles of c1 and c2; the proof's "
                 "text was not available here, so that report is not verified (the roles "
                 "below are fixed by the exact curves)."),
    "example1": ("A 2-D data set with two classifiers whose curves cross in l2 but not in "
                 "l_inf (Fig. 6; per issue 14)."),
    "theorem2": ("For a two-class linear classifier the curves in two l_p norms are scaled "
                 "copies of one another, with factor ||w||_q1 / ||w||_q2 (per issue 14); "
                 "this holds when the input box does not bind."),
    "fig5": ("Abstract: scale distinguishes small from large perturbations and is tied to "
             "the data set, so robustness thresholds must be chosen per data set. Table 2 as "
             "the authors' notebook (inter_class_distances_table) prints it (smallest and "
             "largest distance of a point to the nearest point of another class, distances "
             "below 1e-4 dropped, on 10,000 test points; Tiny-ImageNet 98,179 training "
             "points, UCI HAR 2,947) is in the table below, next to this run's."),
    "fig7": ("The authors' repository lists one visualisation of adversarial examples for "
             "different models and norms (notebook visualization_of_adversarial_examples)."),
    "fig3": ("Per issue 14: the MMR+AT l_inf models' curves change slope at the training eps "
             "on MNIST and Fashion-MNIST, a sign of overfitting to the threat model (not "
             "checked against the paper's text). The authors' notebook "
             "(rob_curves_sup_dataset_model_comparison) draws l_inf curves of Croce et al.'s "
             "MMR+AT l_inf models on MNIST, Fashion-MNIST, GTSRB and CIFAR-10, 10,000 test "
             "points each."),
    "fig4": ("Abstract of the first arXiv version (in the authors' README): robustness curves "
             "show that l_inf threat models are surprisingly effective at improving "
             "robustness in other l_p norms. Per issue 14: the MMR+AT model trained for l_inf "
             "is better than the l2-trained one in both norms."),
    "fig8": ("Per issue 14, the appendix repeats the curve analysis for larger architectures "
             "(wide ResNets on CIFAR-10); not checked against the paper's text."),
}

#: Table 2 as the authors' notebook prints it (experiments/inter_class_distances_table.ipynb):
#: data set -> norm -> (smallest, largest) distance to the nearest point of another class
PAPER_TABLE2 = {
    "mnist": {"linf": (0.88, 1.00), "l2": (3.03, 10.18)},
    "fmnist": {"linf": (0.36, 1.00), "l2": (2.00, 10.70)},
    "gtsrb": {"linf": (0.07, 0.62), "l2": (0.90, 19.54)},
    "cifar10": {"linf": (0.27, 0.70), "l2": (3.61, 18.57)},
    "tiny-imagenet": {"linf": (0.27, 0.71), "l2": (5.24, 47.49)},
    "uci-har": {"linf": (0.26, 0.87), "l2": (1.26, 4.29)},
}

#: eps of the rows of Table 1 (Fashion-MNIST; around the training eps 0.1 in l_inf)
TABLE_EPS = {"linf": (0.05, 0.1, 0.15, 0.2), "l2": (0.5, 1.0, 1.5, 2.0)}

#: the smoke setting (a CPU budget of about 15 minutes of one core, chosen from measured
#: stage costs: one cnn-small training step of 64 points costs about 8 CPU-s for kw, 2.5 for
#: mmr-at and 3 for mmr-universal on 28x28 images, 7.6 for mmr-at on the 32x32 colour sets,
#: well under 1 for standard and pgd-at); ``train_points_color`` is the training subset of the
#: 3x32x32 sets (GTSRB, CIFAR-10), whose MMR steps cost three times those on 28x28
QUICK = {"train_points": 1000, "train_points_color": 500, "test_points": 300, "epochs": 2,
         "train_steps": 3, "batch_size": 64, "attack": "fmn", "attack_kwargs": {"steps": 30},
         "interclass_points": 1000, "gallery_points": 6, "n_boot": 200}
FULL = {"train_points": 20000, "train_points_color": 20000, "test_points": 1000,
        "epochs": 10, "train_steps": 10, "batch_size": 64, "attack": "auto",
        "attack_kwargs": {}, "interclass_points": 10000, "gallery_points": 8, "n_boot": 1000}

_SETTINGS_FILE = "reproduce.json"
_TIMINGS_FILE = "timings.json"
_STUDY = "robcurves reproduce"
# files another study leaves in its --out folder (robcurves study scaling / tradeoff ...)
_OTHER_STUDIES = ("runs.json", "scaling.html", "tradeoff.html", "analysis.json")


# ------------------------------------------------------------------------------ checks
def check_methods(methods: Sequence[str], what: str = "--methods") -> list[str]:
    """The methods as a list, or ``ValueError`` naming every one ``robcurves.train`` lacks
    (``what``: the option that gave them, for the message)."""
    from ..train import method_names

    ms = [m.strip() for m in methods if m.strip()]
    if not ms:
        raise ValueError(f"{what} is empty; name at least one training method")
    known = method_names()
    bad = [m for m in ms if m not in known]
    if bad:
        raise ValueError(f"training method(s) {', '.join(map(repr, bad))} are not registered in "
                         f"robcurves.train (known: {', '.join(known)}); pass {what} with "
                         "registered ones")
    if len(set(ms)) != len(ms):
        raise ValueError(f"{what} names a method twice: {ms}")
    multi = [m for m in ms if m.startswith("multi-")]  # robcurves.train.fit's convention
    if multi:
        raise ValueError(f"{what}: {', '.join(map(repr, multi))} train(s) against several "
                         "threat models at once; reproduce trains each family for one (l_inf "
                         "or l2 at the data set's eps)")
    return ms


def find_datasets(data_dirs: Sequence[str | Path]) -> dict[str, Path | None]:
    """Every name of :data:`DATASETS` -> its path in the first data folder that has it, or
    ``None`` when no folder has it."""
    found: dict[str, Path | None] = {}
    for name, spec in DATASETS.items():
        found[name] = None
        for base in data_dirs:
            cand = Path(base) / spec["path"]
            if cand.exists():
                found[name] = cand
                break
    return found


def _check_out(out: Path, settings: dict) -> None:
    """Refuse a folder of another study, or one of this study with other settings."""
    sfile = out / _SETTINGS_FILE
    if sfile.exists():
        try:
            old = json.loads(sfile.read_text())
        except json.JSONDecodeError:
            raise ValueError(f"{sfile} is not valid JSON; use another --out") from None
        if old.get("study") != _STUDY:
            raise ValueError(f"{out} holds another study ({old.get('study')!r}); use another "
                             "--out")
        want = json.loads(json.dumps(settings))
        diff = sorted(k for k in set(want) | set(old.get("settings", {}))
                      if want.get(k) != old.get("settings", {}).get(k))
        if diff:
            raise ValueError(f"{out} was written with other settings (differing: "
                             f"{', '.join(diff)}); rerun with the same settings to resume, or "
                             "use another --out")
        return
    if out.exists():
        other = [f for f in _OTHER_STUDIES if (out / f).exists()]
        if other or any(out.iterdir()):
            raise ValueError(f"{out} is not empty and holds no {_SETTINGS_FILE} (found "
                             f"{', '.join(other or sorted(p.name for p in out.iterdir())[:5])}): "
                             "it is another study's or someone's folder; use another --out")


def _first_of_permutation(n: int, k: int, seed: int) -> np.ndarray:
    """``min(n, k)`` positions of ``0..n-1`` drawn by a seeded permutation, sorted."""
    return np.sort(np.random.default_rng(seed).permutation(n)[:min(n, k)])


def _same_classes(train, test, k: int) -> tuple:
    """``train`` and ``test`` with ``k`` classes each: a seeded subset may miss the last
    classes (GTSRB's 43 on 500 points), and a model built for the subset's
    ``max(label) + 1`` classes could not score the labels of the other part."""
    import dataclasses

    if train.classes is not None and test.classes is not None:
        return train, test
    names = tuple(str(i) for i in range(k))
    return (dataclasses.replace(train, classes=train.classes or names),
            dataclasses.replace(test, classes=test.classes or names))


# ------------------------------------------------------------------------------ stages
# Module-level hooks so a test can count the expensive calls.
def _train(*args, **kwargs):
    from ..train import fit

    return fit(*args, **kwargs)


def _distances(*args, **kwargs):
    from ..evaluate import distances

    return distances(*args, **kwargs)


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (user + system, every thread):
    what a run costs on a shared machine, where wall time also counts the others' work."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class _Run:
    """The state of one run: settings, folders, cached stages and timings."""

    def __init__(self, out: Path, cfg: dict, seed: int, log: Callable[[str], None]):
        self.out, self.cfg, self.seed, self.log = out, cfg, seed, log
        self.splits: dict[str, tuple] = {}
        self.split_text: dict[str, str] = {}
        for sub in ("models", "curves", "interclass", "plots"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        tfile = out / _TIMINGS_FILE
        #: stage -> {"kind", "wall", "cpu"}: kept across resumed runs (a reused stage keeps
        #: the time it took when it was computed)
        self.timings: dict[str, dict] = json.loads(tfile.read_text()) if tfile.exists() else {}

    @contextmanager
    def stage(self, key: str, kind: str) -> Iterator[None]:
        """Time one computed stage (wall and :func:`cpu_seconds`) into ``timings.json``; the
        first measurement of a stage is kept (data loading, the only stage a resumed run
        repeats, keeps the time of the run that first did it)."""
        t0, c0 = time.perf_counter(), cpu_seconds()
        yield
        if key not in self.timings:
            self.timings[key] = {"kind": kind, "wall": time.perf_counter() - t0,
                                 "cpu": cpu_seconds() - c0}
            (self.out / _TIMINGS_FILE).write_text(json.dumps(self.timings, indent=1))

    def data(self, name: str, path: Path) -> tuple:
        """``(train, test)`` of a data set: its own splits, else the seeded hold-out rule;
        both cut to seeded subsets of ``train_points`` and ``test_points`` points."""
        if name not in self.splits:
            from ..data.splits import train_test

            with self.stage(f"load {name}", "load"):
                train, test = train_test(str(path))
            rule = (train.info.get("split") or {}).get("rule", "native")
            k = self.cfg["train_points_color" if DATASETS[name].get("color") else "train_points"]
            tr = train.subset(_first_of_permutation(train.n, int(k), self.seed))
            n_tr = tr.n
            # seeded subsets: some sets are stored sorted by class (the CIFAR-10 JPEG folders)
            te = test.subset(_first_of_permutation(test.n, int(self.cfg["test_points"]),
                                                   self.seed))
            tr, te = _same_classes(tr, te, max(train.num_classes, test.num_classes))
            how = ("its own training split" if rule == "native" else
                   f"the seeded hold-out rule on its {train.n + test.n} points (80% for "
                   "training, 20% held out; robcurves.data.splits)")
            self.split_text[name] = (f"{DATASETS[name]['label']}: {n_tr} training points "
                                     f"(seeded subset of {train.n}) from {how}; {te.n} test "
                                     "points (seeded subset of the held-out part)")
            self.splits[name] = (tr, te)
        return self.splits[name]

    def model(self, data: str, path: Path, method: str, norm: str):
        """The model of ``method`` trained on ``data`` for ``norm`` at the data's eps."""
        from ..train import load_model, save_model

        key = f"{data}-{method}-{norm}"
        file = self.out / "models" / f"{key}.rcm"
        if file.exists():
            return load_model(file, device="cpu"), key
        train, test = self.data(data, path)
        eps = float(DATASETS[data][norm])
        self.log(f"training {key} (eps {eps:g}, {train.n} points, {self.cfg['epochs']} "
                 "epochs)")
        with self.stage(f"train {key}", "train"):
            module = _train(train, arch="cnn-small", method=method, norm=norm, eps=eps,
                            steps=int(self.cfg["train_steps"]), epochs=int(self.cfg["epochs"]),
                            batch_size=int(self.cfg["batch_size"]), eval_data=test,
                            eval_points=test.n, eval_steps=int(self.cfg["train_steps"]),
                            seed=self.seed, device="cpu", progress=False,
                            checkpoint=self.out / "models" / f"{key}.ckpt")
            save_model(module, file)
        (self.out / "models" / f"{key}.ckpt").unlink(missing_ok=True)
        return module, key

    def curve(self, data: str, path: Path, method: str, train_norm: str, norm: str):
        """The robustness curve in ``norm`` of the model ``(data, method, train_norm)``."""
        from ..curve import RobustnessCurve

        key = f"{data}-{method}-{train_norm}"
        file = self.out / "curves" / f"{key}@{norm}.json"
        if file.exists():
            return RobustnessCurve.load(file)
        module, _ = self.model(data, path, method, train_norm)
        _, test = self.data(data, path)
        self.log(f"distances of {key} in {norm} ({test.n} points, {self.cfg['attack']})")
        with self.stage(f"curve {key}@{norm}", "curve"):
            d = _distances(module, test.x, test.y, norm, attack=self.cfg["attack"],
                           bounds=(0, 1), seed=self.seed, **self.cfg["attack_kwargs"])
        name = METHOD_LABELS.get(method, method) + (f" ({train_norm})" if train_norm != "linf"
                                                    else "")
        meta = {"model": {"method": method, "train_norm": train_norm,
                          "train_eps": float(DATASETS[data][train_norm]), "data": data}}
        curve = RobustnessCurve.from_distances(d, name=name, metadata=meta)
        curve.save(file)
        return RobustnessCurve.load(file)


# ------------------------------------------------------------------------------ plots
def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path.name)


def _plot_curves(panels: list[tuple[str, list, list[float]]], path: Path,
                 xlabel: str = "eps") -> str:
    """One panel per ``(title, curves, dashed eps)``: robust error against eps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4), squeeze=False)
    for ax, (title, curves, marks) in zip(axes[0], panels, strict=True):
        finite = [c.sorted_distances[np.isfinite(c.sorted_distances)] for c in curves]
        top = max([float(f.max()) for f in finite if f.size] + list(marks) + [1e-6]) * 1.05
        for c in curves:
            e, r = c.steps(top)
            ax.step(e, r, where="post", label=c.name)
        for m in marks:
            ax.axvline(m, ls="--", color="gray", lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("robust error")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    return _save(fig, path)


# ------------------------------------------------------------------------------ sections
def _fmt(v: float) -> str:
    return "inf" if not math.isfinite(v) else f"{v:.3g}"


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |",
             "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _section(title: str, paper: str, measured: str, figures: Sequence[str] = (),
             body: str = "") -> dict:
    return {"title": title, "paper": paper, "measured": measured, "figures": list(figures),
            "body": body}


def _fig2_table1(run: _Run, fmnist: Path | None, methods: list[str], results: dict) -> list:
    from ..comparison import compare

    title = "Fig. 2 and Table 1: the model families on Fashion-MNIST"
    paper = PAPER_SAYS["fig2"]
    if fmnist is None:
        return [_section(title, paper, "Fashion-MNIST was not found in the data folders: "
                         "this section was skipped.")]
    run.data("fmnist", fmnist)  # states the split on the page, also when all is reused
    curves = {nm: [run.curve("fmnist", fmnist, m, "linf", nm) for m in methods]
              for nm in ("linf", "l2")}
    fig = _plot_curves([(f"Fashion-MNIST, {nm}", cs, [DATASETS["fmnist"][nm]])
                        for nm, cs in curves.items()], run.out / "plots" / "fig2.png")
    measured, tables, res = [], [], {}
    for nm, cs in curves.items():
        if len(cs) < 2:
            measured.append(f"{nm}: one model only, nothing to compare.")
            continue
        cmp = compare(cs, n_boot=int(run.cfg["n_boot"]), seed=run.seed)
        tab = cmp.table(list(TABLE_EPS[nm]))
        cross = cmp.crossings
        n_sig = sum(c.significant for c in cross)
        flips = [float(e) for e, f in zip(tab.eps, tab.misleading, strict=True) if f]
        sig_flips = [float(e) for e, f in zip(tab.eps, tab.significant_misleading,
                                                             strict=True) if f]
        res[nm] = {"errors": tab.errors.tolist(), "eps": tab.eps.tolist(),
                   "models": list(tab.models), "crossings": len(cross),
                   "significant_crossings": n_sig, "flip_eps": flips,
                   "significant_flip_eps": sig_flips}
        rows = []
        for i, e in enumerate(tab.eps):
            mark = ("rank flip (significant)" if tab.significant_misleading[i] else
                    "rank flip" if tab.misleading[i] else "")
            rows.append([_fmt(float(e))] + [f"{_pct(float(tab.errors[i, j]))} "
                                             f"(#{int(tab.ranks[i, j])})"
                                             for j in range(len(tab.models))] + [mark])
        tables.append(f"**Table 1 ({nm}, robust error and rank at each eps)**\n\n"
                      + _md_table(["eps", *tab.models, "flag"], rows))
        at = DATASETS["fmnist"][nm]
        errs = ", ".join(f"{c.name} {_pct(float(c.robust_error(at)))}" for c in cs)
        listed = "; ".join(f"{c.better_before} -> {c.better_after} at {_fmt(c.eps)}"
                           + (" (significant)" if c.significant else "") for c in cross[:8])
        more = f" and {len(cross) - 8} more" if len(cross) > 8 else ""
        measured.append(
            f"{nm}: {len(cross)} crossing(s) between pairs of curves, {n_sig} significant at "
            f"95%" + (f" (better before -> better after: {listed}{more})" if cross else "")
            + "; rows of Table 1 whose ranking another row reverses: "
            f"{', '.join(map(_fmt, flips)) or 'none'} (significant in both rows: "
            f"{', '.join(map(_fmt, sig_flips)) or 'none'}); robust error at eps = {_fmt(at)}: "
            f"{errs}.")
    results["fig2"] = res
    n = curves["linf"][0].n
    names = ", ".join(METHOD_LABELS.get(m, m) for m in methods)
    split = run.split_text["fmnist"]
    measured.insert(0, f"{len(methods)} models ({names}), {n} test points, minimal distances "
                       f"by the {run.cfg['attack']} attack; {split}.")
    return [_section(title, paper, " ".join(measured), [fig], "\n\n".join(tables))]


def _theory(results: dict) -> list:
    from . import paper as P

    t1 = P.theorem1([0.1, 0.2, 0.3])
    ex = P.example1()
    t2 = P.theorem2()
    t2b = P.theorem2(box_binds=True)
    results["theory"] = {"theorem1_agrees": t1.agrees(), "example1_agrees": ex.agrees(),
                         "theorem2_holds": t2.holds(), "theorem2_box_holds": t2b.holds()}
    yn = {True: "agree", False: "DO NOT agree"}
    return [
        _section("Theorem 1: curves can cross at any chosen eps",
                 PAPER_SAYS["theorem1"],
                 f"Crossings asked for at 0.1, 0.2, 0.3: the crossings compare() finds and the "
                 f"predicted ones {yn[t1.agrees()]}.", body=t1.to_markdown()),
        _section("Example 1 (Fig. 6): a comparison can depend on the norm",
                 PAPER_SAYS["example1"],
                 f"Found and predicted crossings {yn[ex.agrees()]} in every norm.",
                 body=ex.to_markdown()),
        _section("Theorem 2: linear models' curves are rescaled copies across norms",
                 PAPER_SAYS["theorem2"],
                 f"Unbounded inputs: the theorem {'holds' if t2.holds() else 'FAILS'}; inputs "
                 f"in [0, 1] with saturated coordinates: the curves are "
                 f"{'still' if t2b.holds() else 'not'} scaled copies.",
                 body=t2.to_markdown() + "\n" + t2b.to_markdown()),
    ]


def _interclass(run: _Run, found: dict, results: dict) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import data as rdata
    from ..scale import interclass_distances

    paper = PAPER_SAYS["fig5"]
    rows, res, missing, unusable = [], {}, [], []
    fig, axes = plt.subplots(1, 2, figsize=(9.2, 3.4))
    for name, path in found.items():
        if path is None:
            missing.append(DATASETS[name]["label"])
            continue
        n_pts = int(run.cfg["interclass_points"])
        ds, dist = None, {}
        for nm in ("linf", "l2"):
            file = run.out / "interclass" / f"{name}@{nm}.npy"
            if file.exists():
                dist[nm] = np.load(file)
            else:
                if ds is None:
                    with run.stage(f"load {name} (inter-class)", "load"):
                        ds = rdata.load(str(path))
                    ds = ds.subset(_first_of_permutation(ds.n, n_pts, run.seed))
                run.log(f"inter-class distances of {name} in {nm} ({ds.n} points)")
                with run.stage(f"interclass {name}@{nm}", "interclass"):
                    dist[nm] = np.asarray(interclass_distances(ds.x, ds.y, nm, name=name))
                np.save(file, dist[nm])
        if not all(np.isfinite(d).any() for d in dist.values()):
            unusable.append(DATASETS[name]["label"])
            continue
        for ax, nm in zip(axes, ("linf", "l2"), strict=True):
            s = np.sort(dist[nm][np.isfinite(dist[nm])])
            ax.step(s, np.arange(1, s.size + 1) / s.size, where="post",
                    label=DATASETS[name]["label"])
            res.setdefault(name, {})[nm] = {"min": float(s.min()), "max": float(s.max()),
                                            "median": float(np.median(s)), "n": int(s.size)}
        r = res[name]
        rows.append([DATASETS[name]["label"], r["linf"]["n"],
                     *(_fmt(r[nm][k]) for nm in ("linf", "l2") for k in ("min", "median",
                                                                          "max"))])
    for ax, nm in zip(axes, ("linf", "l2"), strict=True):
        ax.set_xscale("log")
        ax.set_title(f"inter-class distance CDF, {nm}", fontsize=10)
        ax.set_xlabel("distance")
        ax.legend(fontsize=7)
    fig_name = _save(fig, run.out / "plots" / "fig5.png")
    results["interclass"] = res
    if res:
        lo = min(res, key=lambda k: res[k]["linf"]["median"])
        hi = max(res, key=lambda k: res[k]["linf"]["median"])
        measured = (f"On {run.cfg['interclass_points']} points of each set found (seeded "
                    "subset): "
                    f"median l_inf inter-class distance from {_fmt(res[lo]['linf']['median'])} "
                    f"({DATASETS[lo]['label']}) to {_fmt(res[hi]['linf']['median'])} "
                    f"({DATASETS[hi]['label']}). ")
    else:
        measured = "No data set was found. "
    if unusable:
        measured += (f"No finite inter-class distance (a single class among the points "
                     f"taken): {', '.join(unusable)}. ")
    if missing:
        measured += f"Not found here, so not measured: {', '.join(missing)}."
    body = _md_table(["data set", "points", "l_inf min", "l_inf median", "l_inf max",
                      "l2 min", "l2 median", "l2 max"], rows) if rows else ""
    if res:  # next to Table 2 as the authors' notebook prints it
        both = [k for k in res if k in PAPER_TABLE2]
        body += ("\n\n**Table 2 of the authors' notebook (10,000 points; distances below 1e-4 "
                 "dropped) next to this run's (min / max)**\n\n"
                 + _md_table(["data set", "l_inf: paper", "l_inf: this run", "l2: paper",
                              "l2: this run"],
                             [[DATASETS[k]["label"]] + [
                                 c for nm in ("linf", "l2") for c in (
                                     " / ".join(f"{v:.2f}" for v in PAPER_TABLE2[k][nm]),
                                     f"{res[k][nm]['min']:.2f} / {res[k][nm]['max']:.2f}")]
                              for k in both]))
        for nm in ("linf", "l2"):
            mine = sorted(both, key=lambda k: res[k][nm]["min"])
            theirs = sorted(both, key=lambda k: PAPER_TABLE2[k][nm][0])
            same = "the same as" if mine == theirs else "NOT the same as"
            measured += (f" Data sets ordered by their smallest {nm} inter-class distance: "
                         f"{', '.join(DATASETS[k]['label'] for k in mine)} ({same} in the "
                         "authors' Table 2).")
        results["interclass_vs_paper"] = {k: PAPER_TABLE2[k] for k in both}
    return [_section("Fig. 5 and Table 2: inter-class distances", paper, measured,
                     [fig_name] if res else [], body)]


def _gallery(run: _Run, fmnist: Path | None, methods: list[str]) -> list:
    from ..report.gallery import save_gallery

    paper = PAPER_SAYS["fig7"]
    if fmnist is None:
        return [_section("Fig. 7: minimal adversarials", paper,
                         "Fashion-MNIST was not found: no gallery.")]
    figs, notes = [], []
    n = int(run.cfg["gallery_points"])
    for m in methods:
        for nm in ("linf", "l2"):
            file = run.out / "plots" / f"fig7-{m}@{nm}.png"
            if not file.exists():
                module, _ = run.model("fmnist", fmnist, m, "linf")
                _, test = run.data("fmnist", fmnist)
                k = min(test.n, 3 * n)
                try:
                    with run.stage(f"gallery {m}@{nm}", "gallery"):
                        save_gallery(file, module, test.x[:k], test.y[:k], nm, n=n,
                                     attack=run.cfg["attack"], seed=run.seed,
                                     title=f"{METHOD_LABELS.get(m, m)}, {nm}",
                                     **run.cfg["attack_kwargs"])
                except ValueError as exc:
                    notes.append(f"{METHOD_LABELS.get(m, m)} {nm}: {exc}")
                    continue
            figs.append(file.name)
    measured = (f"{len(figs)} galleries (clean, perturbation scaled to be visible, adversarial; "
                "d* and both predicted labels above each column), points at evenly spaced "
                "ranks of d*." + (" " + "; ".join(notes) if notes else ""))
    return [_section("Fig. 7: minimal adversarials", paper, measured, figs)]


def _fig3_fig4(run: _Run, found: dict, method: str, results: dict) -> list:
    from ..diagnostics import detect_kink, fit_scale

    label = METHOD_LABELS.get(method, method)
    sets = [k for k, p in found.items() if p is not None and DATASETS[k]["train"]]
    paper3 = PAPER_SAYS["fig3"]
    if not sets:
        return [_section("Fig. 3", paper3, "No data set with training data was found.")]
    curves, kinks, res = [], [], {}
    for k in sets:
        run.data(k, found[k])  # states the split on the page, also when all is reused
        c = run.curve(k, found[k], method, "linf", "linf")
        c = type(c)(distances=c.distances, norm=c.norm, name=DATASETS[k]["label"],
                    kind=c.kind, labels=c.labels, predictions=c.predictions,
                    metadata=c.metadata)
        curves.append(c)
        kk = detect_kink(c, float(DATASETS[k]["linf"]))
        kinks.append(kk)
        res[k] = {"fired": kk.detected, "location": kk.location, "score": kk.score,
                  "p_value": kk.p_value, "train_eps": kk.train_eps}
    panels = [(f"{c.name} ({label}, l_inf eps {_fmt(DATASETS[k]['linf'])})", [c],
               [DATASETS[k]["linf"]]) for k, c in zip(sets, curves, strict=True)]
    fig3 = _plot_curves(panels, run.out / "plots" / "fig3.png")
    kink_text = "; ".join(
        f"{c.name}: {'FIRES' if kk.detected else 'does not fire'} (score {kk.score:.2f}, i.e. "
        f"the slope grows x{2 ** kk.score:.1f} beyond the trend, p {kk.p_value:.2g}, at "
        f"{_fmt(kk.location)}; clean error {_pct(float(c.robust_error(0.0)))})"
        for c, kk in zip(curves, kinks, strict=True))
    measured3 = (f"{label} models trained for l_inf. Splits: "
                 + " ".join(run.split_text[k] + "." for k in sets)
                 + f" Kink diagnostic (detect_kink near the training eps; it fires when the "
                   f"slope grows at least x4 and the binomial test gives p < 0.01): "
                   f"{kink_text}.")
    grey = [k for k in ("mnist", "fmnist") if k in res]
    if grey:
        fired = [k for k in grey if res[k]["fired"]]
        measured3 += (" As the paper reports (a kink at the training eps on MNIST and "
                      "Fashion-MNIST): " + ("yes" if len(fired) == len(grey) else
                                            "partly" if fired else "no")
                      + f", it fires on {len(fired)} of the {len(grey)} of them found here.")
    results["fig3"] = res
    out = [_section("Fig. 3: the robust family across data sets", paper3, measured3, [fig3])]

    paper4 = PAPER_SAYS["fig4"]
    k = sets[0]
    pair = {tn: {nm: run.curve(k, found[k], method, tn, nm) for nm in ("linf", "l2")}
            for tn in ("linf", "l2")}
    panels = [(f"{DATASETS[k]['label']}, evaluated in {nm}",
               [pair["linf"][nm], pair["l2"][nm]], [DATASETS[k][nm]]) for nm in ("linf", "l2")]
    fig4 = _plot_curves(panels, run.out / "plots" / "fig4.png")
    res4, parts = {}, []
    for nm in ("linf", "l2"):
        top = 2 * float(DATASETS[k][nm])
        a = {tn: pair[tn][nm].auc(top, normalized=True) for tn in ("linf", "l2")}
        better = "neither (tie)" if a["linf"] == a["l2"] else min(a, key=a.get) + "-trained"
        res4[nm] = {"auc": a, "better": better, "eps_max": top}
        parts.append(f"in {nm}, mean robust error on [0, {_fmt(top)}]: l_inf-trained "
                     f"{a['linf']:.3f}, l2-trained {a['l2']:.3f} (better: {better})")
    scales, no_scale = {}, []
    for tn in ("linf", "l2"):
        try:
            scales[tn] = fit_scale(pair[tn]["linf"], pair[tn]["l2"])
        except ValueError as exc:  # e.g. every point misclassified or unbroken
            no_scale.append(f"{tn}-trained: no scale factor ({exc})")
    res4["scale"] = {tn: {"factor": s.factor, "misfit": s.misfit} for tn, s in scales.items()}
    results["fig4"] = res4
    measured4 = (f"{DATASETS[k]['label']}, {label} trained for l_inf (eps "
                 f"{_fmt(DATASETS[k]['linf'])}) and for l2 (eps {_fmt(DATASETS[k]['l2'])}): "
                 + "; ".join(parts) + ". Fitted l_inf -> l2 scale factors: "
                 + ", ".join([f"{tn}-trained {s.factor:.3g} (misfit {s.misfit:.3f})"
                              for tn, s in scales.items()] + no_scale) + ".")
    linf_wins = [nm for nm in ("linf", "l2") if res4[nm]["better"] == "linf-trained"]
    res4["linf_better_in"] = linf_wins
    measured4 += (" As the paper reports (the l_inf-trained model better in both norms): "
                  + ("yes." if len(linf_wins) == 2 else
                     f"no (the l_inf-trained model is better in "
                     f"{' and '.join(linf_wins) or 'neither norm'} only)."))
    # the l_inf-trained models of Fig. 3 on every data set: their l2 curves and scale factors
    rows = []
    for d in sets:
        cl = run.curve(d, found[d], method, "linf", "linf")
        c2 = run.curve(d, found[d], method, "linf", "l2")
        try:
            f = fit_scale(cl, c2)
            cells = [f"{f.factor:.3g}", f"{f.misfit:.3f}"]
            res4.setdefault("scale_by_data", {})[d] = {"factor": f.factor, "misfit": f.misfit}
        except ValueError:
            cells = ["none (no point with finite positive distances in both norms)", ""]
        rows.append([DATASETS[d]["label"], f"{_pct(float(cl.robust_error(DATASETS[d]['linf'])))}",
                     f"{_pct(float(c2.robust_error(DATASETS[d]['l2'])))}", *cells])
    body4 = (f"**{label} (l_inf-trained) on each data set: robust error at the l_inf and the "
             "l2 eps, fitted l_inf -> l2 scale factor and misfit (largest robust-error gap "
             "left after rescaling)**\n\n"
             + _md_table(["data set", "l_inf error", "l2 error", "scale factor", "misfit"],
                         rows))
    out.append(_section("Fig. 4: transfer of robustness across norms", paper4, measured4,
                        [fig4], body4))
    return out


def _fig8(run: _Run, found: dict, checkpoint: str | None, results: dict) -> list:
    title = "Fig. 8: a larger architecture (wrn-28-10 on CIFAR-10)"
    paper = PAPER_SAYS["fig8"]
    if checkpoint is None:
        return [_section(title, paper, "Not run: this section needs a wrn-28-10 checkpoint "
                         "on disk (pass --wrn-checkpoint PATH, a RobustBench-format state "
                         "dict); none is trained here.")]
    if found.get("cifar10") is None:
        return [_section(title, paper, "Not run: CIFAR-10 was not found.")]
    from ..curve import RobustnessCurve
    from ..train import load_checkpoint

    file = run.out / "curves" / "cifar10-wrn-28-10@linf.json"
    if file.exists():
        c = RobustnessCurve.load(file)
    else:
        module = load_checkpoint(checkpoint, "wrn-28-10", num_classes=10,
                                 input_shape=(3, 32, 32), device="cpu")
        _, test = run.data("cifar10", found["cifar10"])
        d = _distances(module, test.x, test.y, "linf", attack=run.cfg["attack"], bounds=(0, 1),
                       seed=run.seed, **run.cfg["attack_kwargs"])
        RobustnessCurve.from_distances(d, name="wrn-28-10").save(file)
        c = RobustnessCurve.load(file)
    fig = _plot_curves([("CIFAR-10, linf", [c], [8 / 255])], run.out / "plots" / "fig8.png")
    results["fig8"] = {"median_distance": c.median_distance, "n": c.n}
    return [_section(title, paper, f"Checkpoint {checkpoint}: {c.n} CIFAR-10 test points, "
                     f"median l_inf distance {_fmt(c.median_distance)}, robust error at 8/255 "
                     f"{_pct(float(c.robust_error(8 / 255)))}. (CIFAR-10 here is the JPEG copy: "
                     "fine for shapes, not for exact numbers.)", [fig])]


# ------------------------------------------------------------------------------ page
def _md_to_html(md: str) -> str:
    """The markdown this module writes (headings, pipe tables, bullets, bold, paragraphs) as
    HTML."""
    import html as H
    import re

    def inline(t: str) -> str:
        return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", H.escape(t))

    out, blocks = [], [b for b in md.strip().split("\n\n") if b.strip()]
    for b in blocks:
        lines = b.strip().splitlines()
        if lines[0].startswith("#"):
            level = min(6, len(lines[0]) - len(lines[0].lstrip("#")) + 1)
            out.append(f"<h{level}>{inline(lines[0].lstrip('#').strip())}</h{level}>")
            lines = lines[1:]
            if not lines:
                continue
        if lines[0].startswith("|"):
            cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines
                     if not set(ln.replace("|", "").strip()) <= set("- ")]
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in cells[0])
                       + "</tr>" + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>"
                                                              for c in r) + "</tr>"
                                           for r in cells[1:]) + "</table>")
        elif lines[0].startswith("- "):
            out.append("<ul>" + "".join(f"<li>{inline(ln[2:])}</li>" for ln in lines)
                       + "</ul>")
        else:
            out.append(f"<p>{inline(' '.join(lines))}</p>")
    return "\n".join(out)


def _write_page(out: Path, sections: list[dict], header: dict) -> list[Path]:
    import base64

    from ..report.render import environment

    env = environment()  # the one environment of every page robcurves writes
    env.filters.setdefault("md", _md_to_html)
    inline = {f: base64.b64encode((out / "plots" / f).read_bytes()).decode()
              for s in sections for f in s["figures"]}
    md = out / "reproduce.md"
    md.write_text(env.get_template("reproduce.md.j2").render(sections=sections, h=header))
    html = out / "reproduce.html"
    html.write_text(env.get_template("reproduce.html.j2").render(sections=sections, h=header,
                                                                 inline=inline))
    return [html, md]


def reproduce(out: str | Path, *, quick: bool = False, methods: Sequence[str] = PAPER_METHODS,
              robust_method: str = "mmr-at", data_dirs: Sequence[str | Path] | None = None,
              settings: dict | None = None, wrn_checkpoint: str | None = None, seed: int = 0,
              log: Callable[[str], None] = print) -> dict:
    """Run the paper's experiment (module docstring) into ``out`` and write the page.

    Args:
        out: output folder (created; an existing one must hold this study with the same
            settings, which then resumes).
        quick: the :data:`QUICK` setting (few points and epochs) instead of :data:`FULL`.
        methods: training methods of Fig. 2 / Table 1 / Fig. 7 (``robcurves.train`` names).
        robust_method: the family of Figs. 3 and 4 (the paper's MMR+AT).
        data_dirs: folders searched for the data sets of :data:`DATASETS` (default:
            :func:`robcurves.data.registry.data_dirs`).
        settings: overrides of the setting's entries (``test_points``, ``epochs`` ...).
        wrn_checkpoint: a wrn-28-10 state dict for Fig. 8 (else that section says it needs
            one).
        seed: seeds subsets, training and attacks.

    Returns:
        ``{"results": ..., "paths": [...], "seconds": ..., "cpu_seconds": ...}``.

    Raises:
        ValueError: an unregistered method, a bad setting, or an ``out`` holding another
            study or this one with other settings, before any work starts.
    """
    from ..data.registry import data_dirs as default_dirs

    t0, c0 = time.perf_counter(), cpu_seconds()
    ms = check_methods(methods)
    (rm,) = check_methods([robust_method], "--robust-method")
    cfg = dict(QUICK if quick else FULL)
    for k, v in (settings or {}).items():
        if k not in cfg:
            raise ValueError(f"unknown setting {k!r}; known: {', '.join(sorted(cfg))}")
        if k in ("train_points", "train_points_color", "test_points", "epochs", "train_steps",
                 "interclass_points", "gallery_points", "n_boot") and (int(v) != v or v < 1):
            raise ValueError(f"{k} must be a positive integer; got {v!r}")
        cfg[k] = v
    if cfg["test_points"] < 2:
        raise ValueError(f"test_points must be >= 2 to draw a curve; got {cfg['test_points']}")
    if wrn_checkpoint is not None and not Path(wrn_checkpoint).is_file():
        raise FileNotFoundError(f"--wrn-checkpoint {wrn_checkpoint!r} is not a file")
    dirs = [Path(d) for d in (data_dirs if data_dirs is not None else default_dirs())]
    found = find_datasets(dirs)
    out = Path(out)
    recorded = {"methods": ms, "robust_method": rm, "seed": int(seed), "quick": bool(quick),
                "arch": "cnn-small", "wrn_checkpoint": wrn_checkpoint,
                "datasets": {k: str(v) if v else None for k, v in found.items()},
                "table_eps": {k: list(v) for k, v in TABLE_EPS.items()}, **cfg}
    _check_out(out, recorded)
    out.mkdir(parents=True, exist_ok=True)
    (out / _SETTINGS_FILE).write_text(json.dumps({"study": _STUDY, "settings": recorded},
                                                 indent=1))
    run = _Run(out, cfg, int(seed), log)
    results: dict = {}
    sections = []
    sections += _fig2_table1(run, found["fmnist"], ms, results)
    sections += _theory(results)
    sections += _interclass(run, found, results)
    sections += _gallery(run, found["fmnist"], ms)
    sections += _fig3_fig4(run, found, rm, results)
    sections += _fig8(run, found, wrn_checkpoint, results)
    secs, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    header = {"settings": json.dumps(recorded, indent=1), "seconds": secs, "cpu": cpu,
              "threads": _threads(), "quick": quick, "setting_text": _setting_text(cfg, quick),
              "timings": _timings_md(run.timings)}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    paths = _write_page(out, sections, header)
    return {"results": results, "paths": paths, "seconds": secs, "cpu_seconds": cpu,
            "sections": [s["title"] for s in sections]}


def _setting_text(cfg: dict, quick: bool) -> str:
    """The setting in words, for the top of the page."""
    what = ("--quick: a smoke run with few points and epochs; its numbers are NOT those of "
            "the paper's setting" if quick else "the full setting")
    return (f"{what}. Models: cnn-small trained for {cfg['epochs']} epoch(s) on "
            f"{cfg['train_points']} training points ({cfg['train_points_color']} on the 3x32x32 "
            f"sets GTSRB and CIFAR-10), batch {cfg['batch_size']}; curves on "
            f"{cfg['test_points']} test points per model with the {cfg['attack']} attack "
            f"({', '.join(f'{k} {v}' for k, v in cfg['attack_kwargs'].items()) or 'defaults'}; "
            "upper bounds on the minimal distances); inter-class distances on "
            f"{cfg['interclass_points']} points per data set; {cfg['n_boot']} bootstrap "
            "resamples for significance. The authors' released notebooks compute the paper's "
            "curves on 10,000 test points (MNIST for Fig. 2; MNIST, Fashion-MNIST, GTSRB and "
            "CIFAR-10 for Fig. 3) of models published by Croce et al. and by Wong & Kolter, "
            "not of models trained here.")


def _timings_md(timings: dict) -> str:
    """Per kind of stage, and per training run: wall and CPU seconds as measured when each
    stage was computed (a resumed run keeps the first measurement)."""
    if not timings:
        return ""
    kinds: dict[str, list[float]] = {}
    for t in timings.values():
        k = kinds.setdefault(t["kind"], [0, 0.0, 0.0])
        k[0] += 1
        k[1] += t["wall"]
        k[2] += t["cpu"]
    rows = [[k, int(v[0]), f"{v[1]:.0f}", f"{v[2]:.0f}"] for k, v in kinds.items()]
    rows.append(["all stages", len(timings), f"{sum(v[1] for v in kinds.values()):.0f}",
                 f"{sum(v[2] for v in kinds.values()):.0f}"])
    train = [[k.removeprefix("train "), f"{t['wall']:.0f}", f"{t['cpu']:.0f}"]
             for k, t in timings.items() if t["kind"] == "train"]
    return ("**Stage times (seconds; CPU: this process and its children, every thread; wall "
            "also counts other jobs on a shared machine)**\n\n"
            + _md_table(["stage", "count", "wall s", "CPU s"], rows)
            + ("\n\n**Training runs**\n\n" + _md_table(["model", "wall s", "CPU s"], train)
               if train else ""))


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())
