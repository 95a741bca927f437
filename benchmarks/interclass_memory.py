"""Peak memory of exact inter-class distances as the number of points grows.

Each configuration runs in its own Python process (so that peak RSS is its own) on synthetic
8-bit images (values k/255, 10 classes, smooth random patterns plus noise) of dimension ``--dim``
(default 12,288 = 64x64x3, Tiny-ImageNet's size) and reports the wall time, the peak resident
memory, the memory of the data itself (N x D float32) and the rest. The search is blockwise, so
the rest must not grow with N^2: it is the per-block scratch (O(block x (D + N))), the caches
(reference-side features and l_inf indicators, each kept only while it fits in 1 GiB, so the
rest grows with N up to that size and drops back beyond it), per-point arrays (O(N k)) and,
for l1, a copy of the data summed over groups of 4 coordinates (N x D / 4 float32), for l_inf
a subset of D / 12 coordinates.

    python benchmarks/interclass_memory.py --sizes 5000,10000,20000 --norms 2

Writes its section of benchmarks/RESULTS.md between the interclass-memory markers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, write_section  # noqa: E402

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {src!r})
import numpy as np, torch
torch.set_num_threads({threads})
from robcurves.scale import interclass_distances
n, d, norm = {n}, {d}, {norm!r}
rng = np.random.default_rng(0)
y = rng.integers(0, 10, n)
proto = rng.random((10, 48)).astype(np.float32)
basis = rng.random((48, d)).astype(np.float32) / 48
x = np.empty((n, d), dtype=np.float32)
for s in range(0, n, 4096):
    e = min(s + 4096, n)
    v = proto[y[s:e]] @ basis + 0.35 * rng.random((e - s, d), dtype=np.float32)
    x[s:e] = np.round(np.clip(v / 1.2, 0, 1) * 255) / 255
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
r = interclass_distances(x, y, norm)
secs = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(secs=secs, peak_kib=peak, before_kib=base,
                      median=float(np.median(r.distances)))))
"""


def _previous_rows() -> list[str]:
    """Table rows of the interclass-memory section already in RESULTS.md."""
    from _results import RESULTS

    text = RESULTS.read_text() if RESULTS.exists() else ""
    m = re.search(r"<!-- interclass-memory:start -->(.*?)<!-- interclass-memory:end -->", text,
                  flags=re.S)
    return [ln for ln in (m.group(1).splitlines() if m else []) if ln.startswith("| l")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="5000,10000,20000")
    ap.add_argument("--dim", type=int, default=12288)
    ap.add_argument("--norms", default="2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--append", action="store_true",
                    help="keep the rows already in RESULTS.md (other sizes, earlier runs)")
    a = ap.parse_args(argv)
    rows = []
    for norm in a.norms.split(","):
        for n in (int(s) for s in a.sizes.split(",")):
            code = CHILD.format(src=str(ROOT / "src"), threads=a.threads, n=n, d=a.dim,
                                norm=norm)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            data_gib = n * a.dim * 4 / 2**30
            peak = res["peak_kib"] / 2**20
            rows.append((norm, n, res["secs"], peak, data_gib, peak - data_gib))
            print(f"l{norm} N={n} D={a.dim}: {res['secs']:.1f} s, peak {peak:.2f} GiB "
                  f"(data {data_gib:.2f} GiB, rest {peak - data_gib:.2f} GiB)", flush=True)
    lines = ["| norm | N | D | seconds | peak RSS (GiB) | data N x D float32 (GiB) | "
             "rest (GiB) |", "|---|---|---|---|---|---|---|"]
    if a.append:
        lines += _previous_rows()
    lines += [f"| l{r[0]} | {r[1]} | {a.dim} | {r[2]:.1f} | {r[3]:.2f} | {r[4]:.2f} | "
              f"{r[5]:.2f} |" for r in rows]
    table = "\n".join(lines)
    print(table)
    if not a.no_write:
        cmd = "python benchmarks/interclass_memory.py " + " ".join(
            sys.argv[1:] if argv is None else argv)

        write_section("interclass-memory", "\n".join([
            "## Inter-class distances: peak memory (`benchmarks/interclass_memory.py`)", "",
            f"- date: {datetime.datetime.now().isoformat(timespec='minutes')}",
            f"- machine: {machine()}", f"- command: `{cmd}`",
            "- synthetic 8-bit images, 10 classes; each run in its own process",
            *(["- --append: the rows above this command's were measured by earlier runs "
                "(same script; see the git history of this file)"] if a.append else []),
            "- rest = peak - data: block scratch, the feature cache (kept while it fits in "
            "1 GiB: N x (D + 2) float32 for l2, so up to N = 21,800 here) and per-point arrays",
            "", table]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
