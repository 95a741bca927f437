"""robcurves' AutoAttack protocol (:func:`robcurves.robust_accuracy`) against torchattacks'
``AutoAttack`` (version "standard": APGD-CE, APGD-T, FAB-T, Square 5000), same model, same
points, same eps: robust accuracy and wall time side by side.

torchattacks is a benchmark-only peer, installed into a private folder and put on
``sys.path`` here only:

    /work/main/.venv/bin/pip install --no-deps --target /tmp/square-pkgs torchattacks
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/autoattack.py [--n 200] [--models mlp]
    OMP_NUM_THREADS=1 python benchmarks/autoattack.py --square --n 100 --norms linf,l2

Run one model at a time (``--models cnn``): a run replaces the rows of its models (at its
``--peer-steps``) and keeps the others'. ``--peer-steps 100`` sets torchattacks' APGD, APGD-T
and FAB to the published 100 steps (its default is 10).

``--square`` compares the Square attack alone (section ``autoattack-square``): in the full
protocol the APGD runs leave it nothing to break on these models.

torchattacks 3.5.1 imports no torchvision on this code path (nothing to stub). Models: an MLP
(and with ``--models mlp,cnn`` a cnn-small) trained briefly on the first 20,000 Fashion-MNIST
training images by :func:`robcurves.train.fit` (seeded), evaluated on the first ``--n``
test images. Every adversarial torchattacks returns is checked here too (inside the eps ball
and the box; its accuracy counts the points its adversarials do not misclassify). Results go
between the ``autoattack`` markers of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DATA = HERE.parent.parent / "shared" / "datasets"
PEER = Path("/tmp/square-pkgs")

from _results import machine, write_section  # noqa: E402

import robcurves  # noqa: E402
from robcurves.data import load  # noqa: E402

MODELS = {"mlp": ("mlp", 2), "cnn": ("cnn-small", 1)}  # arch, epochs
EPS = {"linf": 0.05, "l2": 1.0}


def get_model(name: str, cache: Path):
    from robcurves.train import fit, load_model, save_model

    path = cache / f"fmnist-{name}.rcm"
    if path.exists():
        return load_model(path), f"cached {path}"
    arch, epochs = MODELS[name]
    train = load(DATA / "fashion-mnist", split="train").subset(slice(0, 20000))
    t0 = time.perf_counter()
    net = fit(train, arch=arch, epochs=epochs, seed=0, progress=False, eval_data=None)
    cache.mkdir(parents=True, exist_ok=True)
    save_model(net, path)
    return net, f"trained here in {time.perf_counter() - t0:.0f} s ({epochs} epochs)"


def peer_autoattack(net, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float,
                    classes: int, steps: int | None = None) -> tuple[float, float, int]:
    """torchattacks' AutoAttack: (robust accuracy, seconds, adversarials outside the ball).
    ``steps``: set the steps of its APGD, APGD-T and FAB (default: theirs, 10)."""
    sys.path.insert(0, str(PEER))
    import torchattacks

    atk = torchattacks.AutoAttack(net, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps,
                                  version="standard", n_classes=classes, seed=0)
    if steps is not None:
        for sub in atk._autoattack.attacks:
            if not isinstance(sub, torchattacks.Square):
                sub.steps = steps
    t0 = time.perf_counter()
    adv = atk(x, y)
    seconds = time.perf_counter() - t0
    p = math.inf if norm == "linf" else 2.0
    d = torch.linalg.vector_norm((adv - x).flatten(1).double(), ord=p, dim=1)
    outside = int(((d > eps * (1 + 1e-5)) | (adv < 0).flatten(1).any(1)
                   | (adv > 1).flatten(1).any(1)).sum())
    with torch.no_grad():
        still = net(adv).argmax(1) == y
    return float(still.float().mean()), seconds, outside


def square_alone(net, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float) -> str:
    """One table row: Square alone (5000 queries, p_init 0.8), ours against torchattacks'."""
    sys.path.insert(0, str(PEER))
    import torchattacks

    r = robcurves.robust_accuracy(net, x, y, norm, eps, attacks=["square"], seed=0)
    atk = torchattacks.Square(net, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps,
                              n_queries=5000, n_restarts=1, p_init=0.8, seed=0)
    t0 = time.perf_counter()
    adv = atk(x, y)
    sec = time.perf_counter() - t0
    with torch.no_grad():
        acc = float((net(adv).argmax(1) == y).float().mean())
    return (f"| {norm} | {eps:g} | {r.accuracy:.3f} | {acc:.3f} | "
            f"{round(100 * (r.accuracy - acc), 1) + 0.0:+.1f} | {r.forward_passes / len(y):.0f} | "
            f"{r.seconds:.0f} | {sec:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--models", default="mlp")
    ap.add_argument("--norms", default="linf,l2")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/robcurves-bench-autoattack"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--peer-steps", type=int, default=None,
                    help="steps of torchattacks' APGD, APGD-T and FAB (default: theirs, 10; "
                         "the published protocol uses 100)")
    ap.add_argument("--square", action="store_true",
                    help="compare Square alone instead (first model only)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    test = load(DATA / "fashion-mnist", split="test")
    x = torch.from_numpy(test.x[:a.n]).float()
    y = torch.from_numpy(test.y[:a.n]).long()
    rows: list[str] = []
    notes: list[str] = []
    peer_steps = a.peer_steps or 10
    if a.square:
        net, _ = get_model(a.models.split(",")[0], a.cache)
        net.eval()
        for norm in a.norms.split(","):
            rows.append(square_alone(net, x, y, norm, EPS[norm]))
            print(rows[-1], flush=True)
            body = "\n".join([
                "## Square alone: robcurves.attacks.square vs torchattacks.Square", "",
                f"{_dt.date.today()}; {machine()}. `python benchmarks/autoattack.py --square "
                f"--n {a.n} --models {a.models} --norms {a.norms}`: the first {a.n} "
                f"Fashion-MNIST test images, fmnist-{a.models.split(',')[0]} (as above), 5000 "
                "queries, p_init 0.8, seed 0, every point (clean accuracy included in both). "
                "Ours counts one forward pass for the clean input besides the queries. Before "
                "the window-only l_inf step (2026-11-30; same draws, accuracy and passes) ours "
                "took 46 s in l_inf here against torchattacks' 20 s.", "",
                "| norm | eps | robcurves | torchattacks | diff (pts) | our passes/point | "
                "ours s | theirs s |", "|---|---|---|---|---|---|---|---|", *rows])
            if not a.no_write:
                write_section("autoattack-square", body)
        return
    kept_rows, kept_notes = _kept(a.models.split(","), peer_steps)
    for name in a.models.split(","):
        net, src = get_model(name, a.cache)
        net.eval()
        arch, epochs = MODELS[name]
        notes.append(f"- fmnist-{name}: {arch}, {epochs} epoch(s) of standard training on the "
                     f"first 20,000 training images (robcurves.train.fit, seed 0); {src}")
        for norm in a.norms.split(","):
            eps = EPS[norm]
            r = robcurves.robust_accuracy(net, x, y, norm, eps, seed=0)
            acc, sec, outside = peer_autoattack(net, x, y, norm, eps, 10, a.peer_steps)
            breakdown = ", ".join(f"{k} {v}" for k, v in r.counts.items())
            diff = round(100 * (r.accuracy - acc), 1) + 0.0  # no "-0.0"
            rows.append(f"| fmnist-{name} | {norm} | {eps:g} | {r.clean_accuracy:.3f} | "
                        f"{r.accuracy:.3f} | {acc:.3f} | {diff:+.1f} | "
                        f"{r.seconds:.0f} | {sec:.0f} | {r.seconds / sec:.2f} | {breakdown} | "
                        f"{outside} | {peer_steps} |")
            print(rows[-1], flush=True)
            body = _table(a, kept_rows + rows, kept_notes + notes)
            if not a.no_write:  # after every row, so an interrupted run keeps what it did
                write_section("autoattack", body)
    print(body)


def _kept(models: list[str], peer_steps: int) -> tuple[list[str], list[str]]:
    """Rows and notes of the section already in RESULTS.md that this run does not redo (other
    models, or the same model at other peer steps): a run of ``--models cnn`` adds to the mlp
    rows instead of erasing them. Rows from before the ``peer steps`` column ran torchattacks
    at its default, 10 steps."""
    import re

    from _results import RESULTS

    text = RESULTS.read_text() if RESULTS.exists() else ""
    m = re.search(r"<!-- autoattack:start -->(.*?)<!-- autoattack:end -->", text, flags=re.S)
    rows, notes = [], []
    for line in (m.group(1).splitlines() if m else []):
        if line.startswith("| fmnist-"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) == 12:
                cells.append("10")
                line = line + " 10 |"
            if cells[0].removeprefix("fmnist-") not in models or int(cells[12]) != peer_steps:
                rows.append(line)
        elif line.startswith("- fmnist-") and line[9:].split(":")[0] not in models:
            notes.append(line)
    return rows, notes


def _table(a: argparse.Namespace, rows: list[str], notes: list[str]) -> str:
    return "\n".join([
        "## AutoAttack protocol: robcurves.robust_accuracy vs torchattacks.AutoAttack",
        "",
        f"{_dt.date.today()}; {machine()}. `OMP_NUM_THREADS=1 python benchmarks/autoattack.py "
        f"--n {a.n} --models MODELS --norms {a.norms} [--peer-steps 100]`, one run per model "
        "(a run keeps the rows of the others): the first "
        f"{a.n} Fashion-MNIST "
        "test images, both protocols in the same process, seed 0, on a machine shared with "
        "other jobs (times are indicative). Ours: the published settings (APGD-CE and APGD-T "
        "100 steps, 9 targets; FAB-T 100 steps, 9 targets; Square 5000 queries). "
        "torchattacks 3.5.1 `AutoAttack(version=\"standard\")` with its APGD, APGD-T and FAB "
        "at `peer steps`: 10 is its classes' default, 100 the published setting "
        "(`--peer-steps 100`). Wall times on this machine, shared with another benchmark "
        "running at the same time, vary up to 3x between runs of the same command: compare "
        "the two times of one row (same run, same process). Measured 2026-11-30 after the fix "
        "below: at the published 100 steps ours took 0.61-0.79x torchattacks' time (l_inf "
        "0.77 and 0.79, l2 0.61 and 0.66), at torchattacks' default 10 steps 1.38-1.93x; "
        "there torchattacks runs APGD-T and FAB-T at a tenth of the published steps and "
        "ours at the published 100 (these two stages take ours 46 s of 80 s on fmnist-cnn "
        "l_inf). Before that fix the rows here showed 2.0-3.0x in l_inf, at 10 and at 100 "
        "steps; the old code run again the same day on fmnist-mlp l_inf took 2.41x at 10 "
        "steps (80 s against 33 s) and 1.03x at 100 (85 s against 82 s), so the 3.02x at 100 "
        "steps (ours 390 s; our same protocol took 121 s in the 10-step run) was mostly "
        "machine load. The cause of the "
        "rest was Square's l_inf step, in the stage that runs 5000 queries on every point "
        "still robust (half of them here, though it breaks none). The step redraws the signs "
        "of every point while some point's new window would leave its image unchanged "
        "(about 7 draws per step: a 1-pixel window keeps its value under one sign of two), "
        "and it built whole candidate images for each draw, so a query cost 130 us per "
        "point against torchattacks' 79 us (fmnist-mlp, 100 points, one run; torchattacks, "
        "like fra31's "
        "PyTorch AutoAttack, takes one window and one sign for the whole batch per step and "
        "never redraws; ours has per-point windows and redraws, as the paper's reference "
        "code). It now works on the windows only, with the same random draws and results "
        "(80 us against 87 us in one later run). Before and after, run back to back "
        "(protocol alone, 200 points, l_inf): Square 51.7 s -> 27.8 s on fmnist-mlp, "
        "59.8 s -> 31.8 s on fmnist-cnn (the protocol 81.4 s -> 55.4 s and 110.5 s -> "
        "80.5 s), the same "
        "693,156 and 747,533 forward passes and the same broken-by per point; l2 did not "
        "change (60.3 s -> 60.5 s, 81.0 s -> 79.8 s). Accuracy difference in points (ours minus "
        "torchattacks; positive: ours finds fewer adversarials). `outside`: torchattacks "
        "adversarials outside the eps ball or the box.",
        "",
        "| model | norm | eps | clean | robcurves | torchattacks | diff (pts) | ours s | "
        "theirs s | time ratio | ours: broken by | outside | peer steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        *notes,
    ])

if __name__ == "__main__":
    main()
