"""Thread count against speed on idle and busy cores: what default ``--threads`` should be.

Two tasks a user runs first, each in a fresh process with torch set to T threads:

* ``curve``: ``robcurves.distances`` (default ``auto`` attack, l_inf) of the small CNN
  (``cnn-small``, Fashion-MNIST-shaped 1x28x28 inputs) on 10 Fashion-MNIST test points;
* ``train``: 20 batches of 64 of PGD adversarial training of the same CNN (10 steps).

Under two loads: ``as found`` (the machine as it is, other users included; the load average is
recorded) and ``busy`` (plus one spinning process per core for the run's duration). A run longer
than ``--limit`` seconds is stopped and reported as such.

    python benchmarks/threads.py [--threads 1,2] [--limit 120] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(HERE))
from _results import machine, write_section  # noqa: E402

_TASK = r"""
import sys, time, json
import numpy as np, torch
torch.set_num_threads(int(sys.argv[2]))
import robcurves
from robcurves import data as rdata
from robcurves.train import fit
from robcurves.train.archs import build

task = sys.argv[1]
try:
    ds = rdata.load("fmnist", split="test")
except Exception:  # no Fashion-MNIST on this machine: random inputs of its shape
    g = np.random.default_rng(0)
    ds = rdata.Dataset(x=g.random((1280, 1, 28, 28), dtype=np.float32),
                       y=g.integers(0, 10, 1280), name="random-1x28x28")
if task == "curve":
    torch.manual_seed(0)
    net = build("cnn-small", (1, 28, 28), 10).eval()
    t0 = time.perf_counter()
    d = robcurves.distances(net, ds.x[:10], ds.y[:10], "inf", seed=0)
    print(json.dumps({"seconds": time.perf_counter() - t0, "units": 10}))
else:
    sub = ds.subset(slice(0, 20 * 64))
    m = fit(sub, arch="cnn-small", method="pgd-at", norm="inf", eps=0.1, steps=10, epochs=1,
            batch_size=64, eval_points=1, eval_steps=1, progress=False, device="cpu")
    print(json.dumps({"seconds": m.robcurves_meta["train_seconds"], "units": 20}))
"""


def _spin() -> None:  # one busy core
    while True:
        pass


def run_one(task: str, threads: int, limit: float) -> float | None:
    """Seconds of ``task`` at ``threads`` threads in a fresh process (None: over ``limit``)."""
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS=str(threads))
    try:
        out = subprocess.run([sys.executable, "-c", _TASK, task, str(threads)], env=env,
                             capture_output=True, text=True, timeout=limit, check=True)
    except subprocess.TimeoutExpired:
        return None
    import json

    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="thread counts to time (default 1,2)")
    ap.add_argument("--limit", type=float, default=120.0, help="seconds before a run is stopped")
    ap.add_argument("--loads", default="as-found,busy", help="as-found and/or busy")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = ap.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",")]
    cores = os.cpu_count() or 1
    rows = []
    for load in args.loads.split(","):
        spinners: list[subprocess.Popen] = []
        if load == "busy":
            spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                        for _ in range(cores)]
            time.sleep(2)
        try:
            for task in ("curve", "train"):
                for t in counts:
                    la = os.getloadavg()[0]
                    s = run_one(task, t, args.limit)
                    rows.append((load, task, t, s, la))
                    took = f"> {args.limit:.0f} s" if s is None else f"{s:.2f} s"
                    print(f"{load:9} {task:6} threads={t}: {took} (load average {la:.2f})",
                          flush=True)
        finally:
            for p in spinners:
                p.kill()
                p.wait()
    lines = ["## Threads: speed at 1 and 2 threads, cores as found and busy", "",
             f"Machine: {machine()}. Date: {_dt.date.today().isoformat()}. `busy` adds one "
             f"spinning process per core ({cores}) to whatever else runs; `as found` is the "
             "machine as it was (a shared machine: the 1-minute load average before each run "
             "is given). `curve`: `robcurves.distances` (auto, l_inf) of an untrained "
             "`cnn-small` on 10 Fashion-MNIST points; `train`: 20 batches of 64 of PGD-AT "
             "(10 steps) of `cnn-small`. Each run in a fresh process. "
             "Command: `python benchmarks/threads.py`.", "",
             "| load | task | threads | seconds | per unit | load average |",
             "|---|---|---|---|---|---|"]
    for load, task, t, s, la in rows:
        unit = "point" if task == "curve" else "batch"
        sec = f"> {args.limit:.0f}" if s is None else f"{s:.2f}"
        per = "-" if s is None else f"{s / (10 if task == 'curve' else 20):.3f} s/{unit}"
        lines.append(f"| {load} | {task} | {t} | {sec} | {per} | {la:.2f} |")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("threads", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
