"""CPU seconds per training step of the MMR methods on ``cnn-small`` (28x28, 10 classes).

One step is what :func:`robcurves.train.fit` does per batch: the method's loss (PGD adversarials
for ``mmr-at``, cross-entropy, the regulariser) and its backward pass. Also timed alone: the
regulariser's forward and backward pass (its share of the step) and, for ``mmr-at``, the PGD
attack. Inputs are uniform random images (seeded); the cost does not depend on the data. Each
method is timed twice: with the regulariser's conv fast path (what training uses) and with the
dense identity-batch computation it replaces (``robcurves.train._mmr.region_geometry``, the same
values and gradients), the latter over ``--dense-steps`` steps.

    OMP_NUM_THREADS=1 python benchmarks/train_cost.py [--steps 2] [--dense-steps 1]
        [--batch 128] [--profile] [--no-write]

Writes the ``train-cost-mmr`` section of RESULTS.md (unless ``--no-write``); ``--profile``
prints cProfile's top functions of one step per method instead of timing.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, write_section  # noqa: E402

from robcurves.model import wrap  # noqa: E402
from robcurves.train import _mmr  # noqa: E402
from robcurves.train.archs import build  # noqa: E402
from robcurves.train.methods import Schedule, make_method, parse_threats  # noqa: E402

METHODS = (("mmr-at", "linf:0.1", {"steps": 40}), ("mmr-universal", "l1:1.0", {}))


def _setup(method: str, threat: str, topts: dict, batch: int):
    torch.manual_seed(0)
    module = build("cnn-small", (1, 28, 28), 10)
    module.train()
    meth = make_method(method, parse_threats(threat, **topts), torch.Generator().manual_seed(0))
    clf = wrap(module, device="cpu", batch_size=256)
    x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(2))
    # the first epoch of ten: k_B at its published start, the regulariser on (ramp 1/10)
    return module, meth, clf, x, y, Schedule(epoch=0.0, epochs=10)


def _cpu(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


@contextlib.contextmanager
def _dense():
    """The regulariser without the conv fast path: the identity batch through every layer."""
    plan = _mmr._conv_plan
    _mmr._conv_plan = lambda steps: None
    try:
        yield
    finally:
        _mmr._conv_plan = plan


def measure(method: str, threat: str, topts: dict, batch: int, steps: int) -> dict:
    module, meth, clf, x, y, sched = _setup(method, threat, topts, batch)

    def step():
        loss, _ = meth.loss(module, clf, x, y, sched)
        module.zero_grad(set_to_none=True)
        loss.backward()

    def reg():
        r = meth.regulariser(module, x, y, sched).mean()
        module.zero_grad(set_to_none=True)
        r.backward()

    def attack():
        n_adv = int(meth.options["ae_frac"] * batch)
        meth.attack(module, clf, x[:n_adv], y[:n_adv], meth.threats[0], sched.eps_scale)

    out = {"step": sum(_cpu(step) for _ in range(steps)) / steps,
           "regulariser": sum(_cpu(reg) for _ in range(steps)) / steps}
    if meth.options["ae_frac"] > 0:
        out["pgd"] = sum(_cpu(attack) for _ in range(steps)) / steps
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--dense-steps", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if min(args.steps, args.dense_steps, args.batch) < 1:
        raise SystemExit(f"--steps, --dense-steps and --batch must be >= 1; got {args.steps}, "
                         f"{args.dense_steps}, {args.batch}")
    if args.profile:
        for method, threat, topts in METHODS:
            module, meth, clf, x, y, sched = _setup(method, threat, topts, args.batch)
            prof = cProfile.Profile()
            prof.enable()
            loss, _ = meth.loss(module, clf, x, y, sched)
            loss.backward()
            prof.disable()
            print(f"== {method}")
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        return
    rows = ["| method | normals | CPU-s per step | regulariser (fwd+bwd) | PGD |",
            "|---|---|---|---|---|"]
    for method, threat, topts in METHODS:
        for label, ctx, steps in (("conv fast path", contextlib.nullcontext, args.steps),
                                  ("identity batch (before)", _dense, args.dense_steps)):
            with ctx():
                r = measure(method, threat, topts, args.batch, steps)
            pgd = f"{r['pgd']:.1f}" if "pgd" in r else "-"
            rows.append(f"| {method} ({threat}) | {label} | {r['step']:.1f} | "
                        f"{r['regulariser']:.1f} | {pgd} |")
            print(rows[-1], flush=True)
    cmd = "OMP_NUM_THREADS=1 python benchmarks/train_cost.py " + " ".join(argv or sys.argv[1:])
    body = (f"## train-cost-mmr: CPU seconds per training step, cnn-small 28x28, batch "
            f"{args.batch}\n\nMachine: {machine()}\n\nCommand: `{cmd.strip()}`; mean of "
            f"{args.steps} step(s) ({args.dense_steps} for the identity batch), CPU time of the "
            "process (`time.process_time`), first epoch of ten (k_B at its start). mmr-at: 40 "
            "PGD steps on half the batch.\n\n"
            + "\n".join(rows))
    if not args.no_write:
        write_section("train-cost-mmr", body)
    print(body)


if __name__ == "__main__":
    main()
