"""Benchmark: exact inter-class distances, robcurves vs blockwise torch.cdist, scikit-learn, faiss.

Every method answers the same question: for each point, the distance to the nearest point of a
different class. robcurves runs on the whole set; a peer that would take too long runs on the
first ``--queries`` points of the set (against all points) and its time is extrapolated linearly
to the whole set (the peers' cost is linear in the number of queries); the table says so. The
results are compared on the queried points: max relative difference against robcurves' float64
distances (the peers compute in float32).

    python benchmarks/interclass.py mnist --queries 1000
    python benchmarks/interclass.py gtsrb tiny --queries 500 --peers cdist

Writes its section of benchmarks/RESULTS.md between the interclass markers.
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from robcurves._norms import norm_name, parse_norm  # noqa: E402
from robcurves.data import load  # noqa: E402
from robcurves.scale import interclass_distances  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"
SETS = {
    "mnist": DATA / "mnist",
    "gtsrb": DATA / "gtsrb" / "gtsrb_test_32x32.npz",
    "tiny": DATA / "tiny-imagenet-200" / "tiny-imagenet-200-val.tar",
}
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, write_section  # noqa: E402


def peer_cdist(x: np.ndarray, y: np.ndarray, q: int, p: float, block: int = 256) -> np.ndarray:
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    out = np.empty(q)
    for s in range(0, q, block):
        e = min(s + block, q)
        d = torch.cdist(xt[s:e], xt, p=p)
        d.masked_fill_(yt[s:e, None] == yt[None, :], math.inf)
        out[s:e] = d.min(1).values.double().numpy()
    return out


def peer_sklearn(x: np.ndarray, y: np.ndarray, q: int, p: float) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    metric = {math.inf: "chebyshev", 2.0: "euclidean", 1.0: "manhattan"}[p]
    out = np.empty(q)
    for c in np.unique(y[:q]):
        nn = NearestNeighbors(n_neighbors=1, metric=metric, algorithm="brute",
                              n_jobs=THREADS["n"] or -1)
        nn.fit(x[y != c])
        rows = np.flatnonzero(y[:q] == c)
        out[rows] = nn.kneighbors(x[rows])[0][:, 0]
    return out


def peer_faiss(x: np.ndarray, y: np.ndarray, q: int, p: float) -> np.ndarray:
    import faiss

    if THREADS["n"]:
        faiss.omp_set_num_threads(THREADS["n"])
    out = np.empty(q)
    for c in np.unique(y[:q]):
        ref = np.ascontiguousarray(x[y != c])
        if p == 2.0:
            index = faiss.IndexFlatL2(x.shape[1])
        else:
            index = faiss.IndexFlat(x.shape[1], faiss.METRIC_Linf if p == math.inf
                                    else faiss.METRIC_L1)
        index.add(ref)
        rows = np.flatnonzero(y[:q] == c)
        d = index.search(np.ascontiguousarray(x[rows]), 1)[0][:, 0].astype(np.float64)
        out[rows] = np.sqrt(np.maximum(d, 0)) if p == 2.0 else d
    return out


THREADS: dict[str, int | None] = {"n": None}
PEERS = {"cdist": peer_cdist, "sklearn": peer_sklearn, "faiss": peer_faiss}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sets", nargs="+", choices=sorted(SETS))
    ap.add_argument("--norms", default="inf,2,1")
    ap.add_argument("--queries", type=int, default=1000,
                    help="points the peers answer (time extrapolated to the whole set)")
    ap.add_argument("--peers", default="cdist,sklearn,faiss")
    ap.add_argument("--limit", type=int, default=None, help="use the first N points only")
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for every method (torch, scikit-learn, faiss); default: all")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        THREADS["n"] = args.threads
    norms = [parse_norm(t) for t in args.norms.split(",")]
    peers = [t for t in args.peers.split(",") if t]
    rows = []
    for name in args.sets:
        ds = load(SETS[name])
        if args.limit:
            ds = ds.subset(slice(0, args.limit))
        x = np.ascontiguousarray(ds.x.reshape(ds.n, -1))
        y = ds.y
        q = min(args.queries, ds.n)
        for p in norms:
            t0 = time.perf_counter()
            ours = interclass_distances(x, y, p, progress=False).distances
            t_ours = time.perf_counter() - t0
            row = {"set": f"{name} ({ds.n}x{x.shape[1]})", "norm": norm_name(p),
                   "ours": t_ours}
            for peer in peers:
                t0 = time.perf_counter()
                try:
                    theirs = PEERS[peer](x, y, q, p)
                except ImportError as exc:
                    row[peer] = None
                    row[peer + "_err"] = f"unavailable ({exc})"
                    continue
                t_peer = (time.perf_counter() - t0) * ds.n / q
                ref = ours[:q]
                rel = float(np.max(np.abs(theirs - ref) / np.maximum(ref, 1e-12)))
                row[peer] = t_peer
                row[peer + "_err"] = f"{rel:.1e}"
            rows.append(row)
            print(_line(row, peers, q, ds.n), flush=True)
    table = _table(rows, peers, args)
    print("\n" + table)
    if not args.no_write:
        _write(table, args)
    return 0


def _line(row: dict, peers: list[str], q: int, n: int) -> str:
    parts = [f"{row['set']} {row['norm']}: ours {row['ours']:.1f}s"]
    for peer in peers:
        if row.get(peer) is None:
            parts.append(f"{peer} {row.get(peer + '_err')}")
        else:
            how = f"extrapolated from {q}" if q < n else "full"
            parts.append(f"{peer} {row[peer]:.1f}s ({how}, x{row[peer] / row['ours']:.1f}, "
                         f"max rel diff {row[peer + '_err']})")
    return "; ".join(parts)


def _table(rows: list[dict], peers: list[str], args: argparse.Namespace) -> str:
    head = ["data", "norm", "robcurves (s)"] + [f"{p} (s)" for p in peers] + \
        [f"speed-up vs {p}" for p in peers] + [f"max rel diff {p}" for p in peers]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["set"], r["norm"], f"{r['ours']:.1f}"]
        cells += ["-" if r.get(p) is None else f"{r[p]:.1f}" for p in peers]
        cells += ["-" if r.get(p) is None else f"{r[p] / r['ours']:.1f}x" for p in peers]
        cells += [str(r.get(p + "_err", "-")) for p in peers]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append(f"Peers answered the first {args.queries} points of each set (against all points) "
               "and their times are extrapolated linearly to the whole set; robcurves ran on "
               "the whole set. Max rel diff: peers (float32) against robcurves (float64 exact) "
               "on the queried points.")
    return "\n".join(out)


def _write(table: str, args: argparse.Namespace) -> None:
    cmd = "python benchmarks/interclass.py " + " ".join(sys.argv[1:])
    write_section("interclass", "\n".join([
        "## Inter-class distances (`benchmarks/interclass.py`)", "",
        f"- date: {datetime.datetime.now().isoformat(timespec='minutes')}",
        f"- machine: {machine()}", f"- command: `{cmd}`",
        "- the machine is shared with other jobs: compare ratios within a row, not across runs",
        "", table]))


if __name__ == "__main__":
    sys.exit(main())
