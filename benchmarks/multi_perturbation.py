"""Benchmark: the multi-perturbation study (Tramèr & Boneh) on Fashion-MNIST.

Reads a finished ``robcurves study multi-perturbation --out DIR`` and writes its section of
benchmarks/RESULTS.md (marker ``multi-perturbation``): the machine, the command, the paper's
table, the answers the study gives, the wall and CPU time of every part as measured when it ran,
and the full setting's time extrapolated from them (training cost proportional to
points x epochs x (1 + PGD steps); attack, spatial and masking cost proportional to points, with
``auto`` costing ``AUTO_OVER_FMN`` times ``fmn``)::

    ROBCURVES_DATA=../shared/datasets robcurves study multi-perturbation --data fmnist \\
        --out /tmp/multi --quick --threads 1
    python benchmarks/multi_perturbation.py --study /tmp/multi \\
        --command "robcurves study multi-perturbation --data fmnist --out /tmp/multi --quick" \\
        --note "wall 55 min under a load average of 8 (7 other jobs on 2 cores)"
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import machine, write_section  # noqa: E402

from robcurves.studies.multi import MultiConfig  # noqa: E402

#: CPU time of ``auto`` over ``fmn`` (default steps) for l_inf, l2 and l1 distances of 100
#: Fashion-MNIST test points on a cnn-small AT-linf model, one thread: 3.5/1.5, 3.5/1.5,
#: 5.8/1.6 CPU seconds (measured while writing the study); their mean
AUTO_OVER_FMN = 2.9


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def _table(res: dict) -> list[str]:
    eps = res["config"]["eps"]
    affine = any("affine" in r for r in res["table"])
    head = ["model", "clean", f"l_inf @ {eps['linf']:g}", f"l2 @ {eps['l2']:g}",
            f"l1 @ {eps['l1']:g}", "union (all l_p)", "RT (30°, 3 px)", "l_inf ∪ RT"]
    n_aff = res["config"].get("affine_points")
    head += [f"union (first {n_aff})", f"affine (first {n_aff})"] if affine else []
    head += ["masking flagged"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in res["table"]:
        cells = [r["model"], *(_pct(r[k]) for k in ("clean", "linf", "l2", "l1", "union",
                                                     "spatial", "linf_spatial"))]
        cells += ([_pct(r["affine_union_same_points"]), _pct(r["affine"])] if "affine" in r
                  else ["", ""]) if affine else []
        cells += [", ".join(n for n, f in r["masking"].items() if f) or "none"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _answers(res: dict) -> list[str]:
    f = res["findings"]
    out = []
    for m, sp in f["specialists"].items():
        near = ", ".join(f"{k} eps: {'yes' if b else 'no'}" for k, b in sp["best_near"].items())
        out.append(f"- {m} best in {sp['norm']}? rank {sp['rank']} at eps {sp['eps']:g} "
                   f"({_pct(sp['accuracy'])}%; best {', '.join(sp['best_models'])}); best at "
                   f"{near}")
    bu = f["best_union"]
    out.append(f"- best union accuracy: {', '.join(bu['models'])} ({_pct(bu['accuracy'])}%); "
               f"MAX or AVG: {'yes' if bu['is_max_or_avg'] else 'no'}")
    li = f.get("linf_model_in_l1")
    if li:
        out.append(f"- l1 accuracy of the l_inf model: {_pct(li['at-linf'])}% (AT-l1 "
                   f"{_pct(li['at-l1'])}%, ST {_pct(li['st'])}%)")
    out.append(f"- gradient masking flagged: {', '.join(f['masking_flagged']) or 'none'} "
               f"(on the first {res['config']['masking_points']} points)")
    return out


def _full_estimate(res: dict) -> tuple[list[str], float]:
    cfg = res["config"]
    full = MultiConfig()
    t = res["times"]
    train_f = (full.train_points * full.epochs * (1 + full.train_steps)) / \
        (cfg["train_points"] * cfg["epochs"] * (1 + cfg["train_steps"]))
    att_f = full.test_points / cfg["test_points"] * (AUTO_OVER_FMN if cfg["attack"] == "fmn"
                                                     else 1.0)
    pts_f = full.test_points / cfg["test_points"]
    mask_f = full.masking_points / max(1, cfg["masking_points"])
    factors = {"train": train_f, "attacks (l_p curves)": att_f, "spatial": pts_f,
               "masking": mask_f, "clean": pts_f, "affine": full.affine_points /
               cfg["affine_points"]}
    lines, total = [], 0.0
    for part, v in t.items():
        est = v["cpu_seconds"] * factors.get(part, 1.0)
        total += est
        lines.append(f"| {part} | {v['seconds']:.0f} | {v['cpu_seconds']:.0f} | "
                     f"x {factors.get(part, 1.0):.1f} | {est / 60:.0f} |")
    return lines, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", required=True, help="a finished study folder")
    ap.add_argument("--command", required=True, help="the command that made it")
    ap.add_argument("--note", default="", help="how the run's wall time was measured")
    args = ap.parse_args()
    res = json.loads((Path(args.study) / "results.json").read_text())
    cfg = res["config"]
    est_lines, est_total = _full_estimate(res)
    wall = sum(v["seconds"] for v in res["times"].values())
    cpu = sum(v["cpu_seconds"] for v in res["times"].values())
    body = [
        "## Multiple perturbation types: `robcurves study multi-perturbation` "
        "(`benchmarks/multi_perturbation.py`)",
        "",
        f"- machine: {machine()}",
        f"- command: `{args.command}`",
        f"- date: {datetime.date.today().isoformat()}",
        f"- setting: {cfg['train_points']} training points, {cfg['epochs']} epochs, "
        f"{cfg['train_steps']}-step PGD, {cfg['arch']}; {res['data']['evaluated']} test points, "
        f"`{cfg['attack']}` distances; masking on {cfg['masking_points']} points in "
        f"{', '.join(cfg['masking_norms'])}; radii {cfg['eps']}",
        f"- time of the parts: {wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU (one thread)"
        + (f"; {args.note}" if args.note else ""),
        "",
        "Accuracy (%) at fixed radii (attack distances: upper bounds on the true accuracy):",
        "",
        *_table(res),
        "",
        f"Each accuracy is a fraction of {res['data']['evaluated']} points: its standard error "
        f"is up to {100 * (0.25 / res['data']['evaluated']) ** 0.5:.1f} points, so smaller "
        "differences between models are noise.",
        "",
        "What it shows (measured, not tuned):",
        "",
        *_answers(res),
        "",
        "Time per part, summed over the six models, and the full setting (all 60,000 training "
        "points, 5 epochs of 10-step PGD, 1,000 test points with `auto`, masking on 100) "
        "extrapolated from the CPU time:",
        "",
        "| part | wall s | CPU s | full / quick | full setting, CPU min |",
        "|---|---|---|---|---|",
        *est_lines,
        "",
        f"Full setting, estimated: {est_total / 3600:.1f} h of CPU on one thread.",
    ]
    write_section("multi-perturbation", "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
