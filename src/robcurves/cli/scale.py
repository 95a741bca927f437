"""``robcurves scale``: inter-class distances of data sets, i.e. what a small eps is on them."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from ._common import add_backend_args, check_backend, parse_norms, positive, ray_kwargs


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "scale", help="inter-class distances: which eps are small on a data set",
        description="For every point, the exact distance to the nearest point of another class, "
                    "per norm. Prints one row per data set; writes scale.md, scale.json (per-point "
                    "values) and one CDF figure per norm into --out. eps_limit = half the smallest "
                    "inter-class distance: from there on no classifier is accurate and robust.")
    p.add_argument("data", nargs="+",
                   help="registered names (digits, mnist, ...) or paths (IDX, npz, CIFAR batches, "
                        "image folders/tars, GTSRB, Tiny-ImageNet, UCI HAR)")
    p.add_argument("--norms", default="linf,l2,l1",
                   help="comma-separated norms: linf, l2, l1 (default linf,l2,l1)")
    p.add_argument("--out", default="scale-out", help="output folder (default scale-out)")
    p.add_argument("--split", default=None, choices=["test", "train"],
                   help="split for folder formats that hold both")
    p.add_argument("--limit", type=int, default=None, help="use only the first N points")
    p.add_argument("--same-class", action="store_true",
                   help="also compute the nearest same-class distance")
    p.add_argument("--duplicate-tol", type=float, default=0.0,
                   help="distance at or below which differently-labelled points count as "
                        "conflicting duplicates (default 0: exact duplicates)")
    p.add_argument("--block-size", type=int, default=1024, help="rows per block (memory knob)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N or auto (default: auto, i.e. cuda if available; "
                        "cpu with --backend ray)")
    add_backend_args(p, "the exact second pass, one query block per batch, on Ray workers "
                        "that each hold the data set once; byte-identical results", gpus=False)
    return p


def _fmt(v: float, bit_depth: int | None, p: float) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if bit_depth and p == math.inf:
        return f"{v:.4g} ({v * (2 ** bit_depth - 1):.1f}/{2 ** bit_depth - 1})"
    return f"{v:.4g}"


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from .._norms import norm_name
    from ..data import load
    from ..scale import _search_device, interclass_distances

    norms = parse_norms(args.norms)
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1; got {args.limit}")
    positive(args.block_size, "--block-size")
    positive(args.duplicate_tol, "--duplicate-tol", allow_zero=True)
    # a device this machine lacks, or one Ray does not use: refused before any work
    _search_device(args.device, None, args.backend)
    backend = ray_kwargs(check_backend(args), gpus=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kwargs = {"split": args.split} if args.split else {}
    results: list[dict] = []
    per_norm: dict[float, list] = {p: [] for p in norms}
    for source in args.data:
        ds = load(source, **kwargs)
        if args.limit is not None:
            ds = ds.subset(slice(0, args.limit))
        bit_depth = ds.info.get("bit_depth")
        entry = {"name": ds.name, "source": ds.source, "samples": ds.n,
                 "classes": ds.num_classes, "dim": int(math.prod(ds.input_shape)),
                 "bit_depth": bit_depth, "norms": {}}
        present = sorted(int(c) for c in np.unique(ds.y))
        if len(present) < 2:  # nothing to measure: say so and carry on with the other sets
            entry["note"] = (f"no inter-class pairs: all {ds.n} points are of class "
                             f"{present[0] if present else '-'}")
            print(f"note: {ds.name}: {entry['note']}; skipped")
            results.append(entry)
            continue
        for p in norms:
            t0 = time.perf_counter()
            r = interclass_distances(ds.x, ds.y, p, same_class=args.same_class,
                                     duplicate_tol=args.duplicate_tol,
                                     block_size=args.block_size,
                                     progress=not args.no_progress, name=ds.name,
                                     device=args.device, **backend)
            res = _finite_or_none(r.to_dict())
            res["seconds"] = round(time.perf_counter() - t0, 3)
            entry["norms"][norm_name(p)] = res
            per_norm[p].append(r)
        results.append(entry)

    lines = _table(results, norms)
    print("\n".join(lines))
    (out / "scale.md").write_text(
        "# Inter-class distances\n\n" + "\n".join(lines) + "\n\n" + _explain(results, norms) + "\n")
    (out / "scale.json").write_text(json.dumps({"data": results}, allow_nan=False))
    for p in norms:
        _plot(per_norm[p], p, out / f"scale_{norm_name(p)}.png")
    print(f"\nwrote {out / 'scale.md'}, {out / 'scale.json'} and "
          f"{', '.join(f'scale_{norm_name(p)}.png' for p in norms)}")
    return 0


def _finite_or_none(obj):
    """``obj`` with every non-finite float replaced by ``None`` (JSON has no nan/inf)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_or_none(v) for v in obj]
    return obj


def _table(results: list[dict], norms: list[float]) -> list[str]:
    from .._norms import norm_name

    head = ["data", "samples", "classes", "dim"]
    for p in norms:
        nm = norm_name(p)
        head += [f"{nm} min", f"{nm} median", f"{nm} max", f"{nm} eps_limit"]
    head += ["excluded"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in results:
        cells = [e["name"], str(e["samples"]), str(e["classes"]), str(e["dim"])]
        excluded = 0
        for p in norms:
            if norm_name(p) not in e["norms"]:  # a set with one class (see its note)
                cells += ["-"] * 4
                continue
            s = e["norms"][norm_name(p)]["summary"]
            cells += [_fmt(s[key], e["bit_depth"], p)
                      for key in ("min", "median", "max", "eps_limit")]
            excluded = max(excluded, s["corrupted"] + s["conflicting_duplicates"])
        cells.append(str(excluded))
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _explain(results: list[dict], norms: list[float]) -> str:
    from .._norms import norm_name

    out = ["Distances are on the raw inputs scaled to [0, 1]. `eps_limit` is half the smallest "
           "inter-class distance: at any eps >= eps_limit two points of different classes share "
           "an adversarial point (their midpoint), so no classifier can be both accurate and "
           "robust on all points. Excluded: corrupted points and conflicting duplicates.", ""]
    for e in results:
        if "note" in e:
            out.append(f"- {e['name']}: {e['note']}")
        for p in norms:
            if norm_name(p) not in e["norms"]:
                continue
            s = e["norms"][norm_name(p)]["summary"]
            out.append(f"- {e['name']}, {norm_name(p)}: no classifier is accurate and robust at "
                       f"eps >= {_fmt(s['eps_limit'], e['bit_depth'], p)} (used {s['used']} of "
                       f"{s['samples']} points; {s['corrupted']} corrupted, "
                       f"{s['conflicting_duplicates']} in conflicting duplicates)")
    return "\n".join(out)


def _plot(results: list, p: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from .._norms import norm_name

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for r in results:
        d = np.sort(r.distances[r.valid])
        if d.size:
            ax.step(d, np.arange(1, d.size + 1) / d.size, where="post", label=r.name or "data")
            ax.axvline(r.eps_limit, ls=":", lw=0.8, color=ax.lines[-1].get_color())
    ax.set_xlabel(f"{norm_name(p)} distance to nearest other-class point")
    ax.set_ylabel("fraction of points")
    ax.set_title(f"Inter-class distances ({norm_name(p)}); dotted: eps_limit")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
