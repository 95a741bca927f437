"""CPU seconds per training step of the certified/robust training methods on ``cnn-small``.

One step: the method's loss on a batch of 50 Fashion-MNIST training images (1x28x28; random
inputs of that shape where the data set is absent), its backward pass and an SGD update, with
torch on one thread, in a fresh process. The network is ``cnn-small`` at its seeded
initialisation (the worst case for the dual bounds: nearly every ReLU is unstable at the larger
radius). Each case runs ``--steps`` steps after one untimed step and reports the mean CPU time
(``time.process_time``) per step.

    python benchmarks/train_cost_kw.py [--eps 0.01,0.1] [--steps 2] [--baseline SRC] [--no-write]

``--baseline SRC`` also times the ``src`` folder of another checkout (e.g. the commit before a
speed-up, exported with ``git archive``) for comparison.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(HERE))
from _results import machine, write_section  # noqa: E402

_TASK = r"""
import sys, time, json
import numpy as np, torch
import torch.nn.functional as F
torch.set_num_threads(1)
from robcurves import data as rdata
from robcurves.train import ThreatModel, make_method
from robcurves.train.archs import build

method, eps, steps, batch = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
n = batch * (steps + 1)
try:
    ds = rdata.load("fmnist", split="train")
    x, y, source = ds.x[:n], ds.y[:n], "Fashion-MNIST"
except Exception:
    g = np.random.default_rng(0)
    x, y, source = g.random((n, 1, 28, 28), dtype=np.float32), g.integers(0, 10, n), "random"
x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
torch.manual_seed(0)
net = build("cnn-small", (1, 28, 28), 10)
opt = torch.optim.SGD(net.parameters(), lr=1e-3)
meth = make_method(method, [ThreatModel("inf", eps)])
times = []
for s in range(steps + 1):
    xb, yb = x[s * batch:(s + 1) * batch], y[s * batch:(s + 1) * batch]
    t0 = time.process_time()
    loss = F.cross_entropy(-meth.margins(net, xb, yb, eps, (0.0, 1.0)), yb)
    opt.zero_grad()
    loss.backward()
    opt.step()
    times.append(time.process_time() - t0)
print(json.dumps({"per_step": sum(times[1:]) / steps, "data": source}))
"""


def run_case(src: Path, method: str, eps: float, steps: int, batch: int) -> dict:
    """Mean CPU seconds per step of ``method`` at radius ``eps`` with the code in ``src``."""
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _TASK, method, str(eps), str(steps),
                          str(batch)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _commit(src: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (subprocess.CalledProcessError, OSError):
        return src.parent.name  # an exported tree: its folder names it


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="kw", help="comma-separated methods (default kw)")
    ap.add_argument("--eps", default="0.01,0.1", help="l_inf radii (default 0.01,0.1)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per case (default 2)")
    ap.add_argument("--batch", type=int, default=50, help="batch size (default 50)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="the src folder of another checkout to time as well")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = ap.parse_args(argv)
    radii = [float(e) for e in args.eps.split(",")]
    if args.steps < 1 or args.batch < 1 or any(not 0 < e <= 1 for e in radii):
        raise SystemExit(f"--steps and --batch must be >= 1 and every eps in (0, 1]; got "
                         f"steps={args.steps}, batch={args.batch}, eps={args.eps}")
    trees = [("this checkout", SRC)]
    if args.baseline is not None:
        trees.insert(0, ("baseline", args.baseline.resolve()))
    rows = []
    for method in args.methods.split(","):
        for eps in radii:
            for label, src in trees:
                r = run_case(src, method, eps, args.steps, args.batch)
                rows.append((method, eps, label, _commit(src), r["per_step"], r["data"]))
                print(f"{method} eps={eps:g} {label}: {r['per_step']:.2f} CPU-s/step",
                      flush=True)
    argline = " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["## Training cost: CPU seconds per step (cnn-small, batch "
             f"{args.batch}, l_inf, one thread)", "",
             f"Machine: {machine()}. Date: {_dt.date.today().isoformat()}. One step: the "
             "method's loss, backward pass and SGD update of the seeded, untrained `cnn-small` "
             f"on {args.batch} images ({rows[0][5] if rows else '-'}), torch on one thread, "
             f"mean of {args.steps} steps after one untimed step, fresh process per case "
             "(a shared machine: other jobs may have been running). "
             f"Command: `python benchmarks/train_cost_kw.py {argline}`."
             + ("" if args.baseline is None else " `baseline`: the `src` of the commit named "
                "(exported with `git archive`)."), "",
             "| method | eps | code | commit | CPU s / step |", "|---|---|---|---|---|"]
    for method, eps, label, commit, sec, _ in rows:
        lines.append(f"| {method} | {eps:g} | {label} | {commit} | {sec:.2f} |")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("train-cost-kw", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
