"""Benchmark: scaling laws of robustness.

1. How well the fit recovers a known law as the grid narrows: synthetic losses from the paper's
   constants (A = 6.687, alpha = 0.2443, B = 7.552, beta = 0.2281, E = 0.5604) with 1%
   multiplicative noise on 6 x 6 grids of N and D spanning 10^3 .. 10^hi, several seeds.
2. The real study: reads the rows of a finished ``robcurves study scaling --out DIR`` and
   reports (and rewrites the folder's page over every run in it) the fits (with bootstrap
   intervals), the held-out error, the compute-optimal N*, D*,
   whether the curve's AUC scales like the robust loss, and the measured per-run times,
   extrapolated (least squares of measured times on FLOPs and MACs) to the requested grid and to
   the full setting.

    python benchmarks/scaling.py --synthetic
    python benchmarks/scaling.py --study DIR --command "robcurves study scaling ..."

Writes its sections of benchmarks/RESULTS.md (markers scaling-synthetic, scaling-fmnist).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import machine, write_section  # noqa: E402

from robcurves.studies import scaling  # noqa: E402

P = scaling.PAPER_CONSTANTS


def synthetic(spans: list[float], seeds: int) -> str:
    exp_true = P["beta"] / (P["alpha"] + P["beta"])
    lines = ["| grid of N and D (each) | seed runs | max abs error alpha | max abs error beta | "
             "max rel. error E | max abs error N* exponent | seconds per fit |",
             "|---|---|---|---|---|---|---|"]
    for hi in spans:
        ea, eb, ee, en, secs = [], [], [], [], []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            n, d = np.meshgrid(np.logspace(3, hi, 6), np.logspace(3, hi, 6))
            n, d = n.ravel(), d.ravel()
            loss = (P["E"] + P["A"] / n ** P["alpha"] + P["B"] / d ** P["beta"]) * \
                (1 + 0.01 * rng.standard_normal(n.size))
            t0 = time.perf_counter()
            law = scaling.fit({"N": n, "D": d, "loss": loss})
            secs.append(time.perf_counter() - t0)
            ea.append(abs(law.alpha - P["alpha"]))
            eb.append(abs(law.beta - P["beta"]))
            ee.append(abs(law.E - P["E"]) / P["E"])
            en.append(abs(law.n_exponent - exp_true))
        lines.append(f"| 10^3 .. 10^{hi:g} | {seeds} | {max(ea):.3f} | {max(eb):.3f} | "
                     f"{100 * max(ee):.1f}% | {max(en):.3f} | {np.mean(secs):.1f} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def _lsq(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """y = a + b x with a >= 0 (plain least squares, then through 0 if a < 0)."""
    b, a = np.polyfit(x, y, 1)
    if a < 0:
        return 0.0, float((x @ y) / (x @ x))
    return float(a), float(b)


def extrapolate(rows: list[dict], widths: list[float], sizes: list[int], epochs: int,
                steps: int, eval_factor: float) -> tuple[float, str]:
    """Predicted seconds of a grid from measured rows: training seconds = a + b * FLOPs,
    evaluation seconds = c + e * MACs, fitted over the measured runs; the evaluation times
    ``eval_factor`` (more test points / a costlier attack)."""
    from robcurves.train import build

    rows = [r for r in rows if r["seconds"] >= r["train_seconds"]]  # not resumed runs
    flops = np.array([r["flops"] for r in rows])
    tr = np.array([r["train_seconds"] for r in rows])
    ev = np.array([r["seconds"] - r["train_seconds"] for r in rows])
    macs = np.array([r["macs"] for r in rows], dtype=np.float64)
    a, b = _lsq(flops, tr)
    c, e = _lsq(macs, ev)
    total = 0.0
    for w in widths:
        m = scaling.count_macs(build("cnn-wide", (1, 28, 28), 10, width=w), (1, 28, 28))
        for dsz in sizes:
            total += a + b * scaling.training_flops(m, dsz, epochs, steps)
            total += (c + e * m) * eval_factor
    how = (f"training s = {a:.3g} + {b:.3g} x FLOPs, evaluation s = {c:.3g} + {e:.3g} x MACs "
           f"(least squares over the {len(rows)} measured runs)")
    return total, how


def study(folder: Path, command: str, wall_s: float | None = None, cpu_s: float | None = None,
          load: str = "about 10") -> str:
    """Every finished run in ``folder`` (its ``runs/*/row.json``, so runs of several grids
    written to one folder count together); rewrites the folder's report over all of them."""
    rows = [json.loads(p.read_text()) for p in sorted((folder / "runs").glob("*/row.json"))]
    rows.sort(key=lambda r: (r["width"], r["D"]))
    t0 = time.perf_counter()
    res = scaling.analyze(rows, bootstrap_replicates=100, held_out_runs=2)
    t_fit = time.perf_counter() - t0
    scaling.write_report(res, rows, folder)
    wall = sum(r["seconds"] for r in rows)
    q = rows[0]["settings"]
    lines = [f"Command: `{command}`", "",
             f"Machine: {machine()}; shared with other jobs (load average {load} on 2 "
             f"cores), so every time below is inflated several-fold. Date: "
             f"{datetime.date.today().isoformat()}.", "",
             f"{len(rows)} runs ({q['method']}, {q['norm']} eps {q['eps']}, {q['epochs']} "
             f"epochs, {q['train_steps']} attack steps, {q['test_points']} test points of the "
             f"test split, distances by {q['attack']} {q['attack_kwargs']}) took "
             f"{wall / 60:.1f} min of wall time run after run (1 thread); the analysis "
             f"(2 fits with 100 bootstrap resamples each, held-out fit) {t_fit:.0f} s.", "",
             "| run | N | D | train s | run s | clean acc | robust acc | robust loss | AUC | "
             "median dist |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md = r["median_distance"]
        lines.append(f"| {r['run']} | {r['N']} | {r['D']} | {r['train_seconds']:.0f} | "
                     f"{r['seconds']:.0f} | {r['clean_accuracy']:.3f} | "
                     f"{r['robust_accuracy']:.3f} | {r['robust_loss']:.3f} | {r['auc']:.3f} | "
                     f"{'inf' if md is None else f'{md:.4f}'} |")
    if wall_s is not None and cpu_s is not None:
        lines += [f"The whole command, measured with `/usr/bin/time`: {wall_s / 60:.1f} min "
                  f"wall clock on the loaded machine, {cpu_s / 60:.1f} min of CPU (user + "
                  f"system), about what it takes on one free core.", ""]
    lines += ["", "```", res["summary"], "```", ""]
    grid_w, grid_d = [1, 2, 4, 8], [2500, 5000, 10000, 20000]
    quick_s, how = extrapolate(rows, grid_w, grid_d, q["epochs"], q["train_steps"], 1.0)
    full = scaling.FULL
    full_s, _ = extrapolate(rows, grid_w, grid_d, full["epochs"], full["train_steps"],
                            full["test_points"] / q["test_points"])
    free = ""
    if wall_s is not None and cpu_s is not None and cpu_s > 0:
        free = (f" (this run's wall clock was {wall_s / cpu_s:.1f} x its CPU time: on free "
                f"cores divide by about that)")
    lines += [f"Expected time of the full grid (widths 1,2,4,8 x D 2500..20000), "
              f"extrapolated from the measured runs ({how}; not measured): at the --quick "
              f"settings {quick_s / 3600:.1f} h, at the full setting ({full['epochs']} epochs, "
              f"{full['train_steps']} attack steps, {full['test_points']} test points) "
              f"{full_s / 3600:.1f} h on this loaded machine{free}; the full setting's "
              f"distances use `auto` instead of 30-step fmn, whose extra cost is not in this "
              f"estimate (only the 5x more test points are)."]
    (folder / "analysis_benchmark.json").write_text(json.dumps(res, indent=1, default=float))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--spans", default="10,8,7,6,5")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--study", default=None, help="output folder of robcurves study scaling")
    ap.add_argument("--command", default="", help="the command that made --study")
    ap.add_argument("--wall-s", type=float, default=None,
                    help="measured wall seconds of the command (/usr/bin/time)")
    ap.add_argument("--cpu-s", type=float, default=None,
                    help="measured CPU seconds (user + system) of the command")
    ap.add_argument("--load", default="about 10", help="load average while it ran")
    args = ap.parse_args()
    if args.synthetic:
        body = synthetic([float(s) for s in args.spans.split(",")], args.seeds)
        write_section("scaling-synthetic", "## Scaling-law fit: recovery as the grid narrows\n\n"
                      "Synthetic losses from the paper's constants, 6 x 6 grid of N and D each "
                      "from 10^3 to 10^hi, 1% multiplicative noise; `robcurves.studies.scaling"
                      ".fit` with its defaults. Errors are the worst over the seeds.\n\n"
                      f"Machine: {machine()} (shared with other jobs: the seconds are "
                      "noisy).\n\n" + body)
    if args.study:
        write_section("scaling-fmnist", "## Scaling laws of robustness on Fashion-MNIST\n\n"
                      + study(Path(args.study), args.command, args.wall_s, args.cpu_s,
                              args.load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
