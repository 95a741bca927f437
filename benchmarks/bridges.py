"""Overhead of the framework bridges: time per attack step (``value_and_grad``) through JAX and
TensorFlow/Keras (and ONNX's torch copy) relative to native torch, for the small MNIST CNN
(conv 16 4x4 s2, ReLU, conv 32 4x4 s2, ReLU, dense 100, ReLU, dense 100, ReLU, dense 10 on
28x28), with the same weights in every framework.

Run: ``python benchmarks/bridges.py [--batch 1 32 128] [--repeats 30] [--threads 1]``.
``--threads`` limits every framework to the same number of CPU threads (set before they are
imported), so the comparison is fair on a shared machine. Prints a table and
writes it into ``benchmarks/RESULTS.md`` between the ``bridges`` markers.
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import robcurves
from robcurves.attacks._core import margin_loss

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, write_section  # noqa: E402


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 16, 4, stride=2), nn.ReLU(),
                         nn.Conv2d(16, 32, 4, stride=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(32 * 5 * 5, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                         nn.Linear(100, 10)).eval()


def limit_threads(n: int) -> None:
    """Give torch, JAX (XLA) and TensorFlow ``n`` CPU threads each (call before importing)."""
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                               f"{'true' if n > 1 else 'false'} "
                               f"intra_op_parallelism_threads={n}").strip()
    torch.set_num_threads(n)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(n)


def classifiers(seq: nn.Sequential) -> dict[str, robcurves.Classifier]:
    from robcurves.bridges.mirror import jax_mirror, keras_mirror

    out = {"torch (native)": robcurves.wrap(seq)}
    fn, params = jax_mirror(seq)
    out["JAX (jit, vjp)"] = robcurves.wrap(fn, framework="jax", params=params)
    out["Keras/TF (tf.function, NHWC)"] = robcurves.wrap(keras_mirror(seq, (1, 28, 28)),
                                                         channels_last=True)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(seq, (torch.zeros(2, 1, 28, 28),), buf, dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}})
    out["ONNX (torch copy of graph)"] = robcurves.wrap(buf.getvalue(), framework="onnx")
    return out


def time_step(clf: robcurves.Classifier, x: torch.Tensor, y: torch.Tensor, repeats: int,
              clock: Callable[[], float] = time.perf_counter) -> float:
    """Median seconds of one ``value_and_grad`` (after warm-up calls that compile); ``clock``
    ``time.process_time`` counts CPU seconds instead (steadier on a shared machine)."""
    for _ in range(3):
        clf.value_and_grad(x, y, margin_loss)
    times = []
    for _ in range(repeats):
        t0 = clock()
        clf.value_and_grad(x, y, margin_loss)
        times.append(clock() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32, 128])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads per framework (default: each framework's own default)")
    ap.add_argument("--no-write", action="store_true", help="only print the table")
    args = ap.parse_args()
    if args.threads is not None:
        limit_threads(args.threads)
    seq = small_cnn()
    clfs = classifiers(seq)
    g = torch.Generator().manual_seed(0)
    rows = []
    for b in args.batch:
        x = torch.rand(b, 1, 28, 28, generator=g)
        with torch.no_grad():
            y = seq(x).argmax(1)
        base = None
        for name, clf in clfs.items():
            t = time_step(clf, x, y, args.repeats)
            base = t if base is None else base
            rows.append((b, name, t * 1e3, t / base))
    lines = ["| batch | framework | ms per step (median) | relative to torch |",
             "|---:|---|---:|---:|"]
    lines += [f"| {b} | {n} | {ms:.3f} | {r:.2f}x |" for b, n, ms, r in rows]
    table = "\n".join(lines)
    print(table)
    if args.no_write:
        return
    import jax
    import tensorflow as tf

    meta = (f"Machine: {machine()} (shared with other jobs: timings are noisy), jax "
            f"{jax.__version__}, tensorflow {tf.__version__}. Command: `python "
            f"benchmarks/bridges.py {' '.join(sys.argv[1:])}`. "
            f"Date: {datetime.date.today().isoformat()}.")
    path = write_section("bridges", "## Bridge overhead: one attack step (`value_and_grad`) on "
                         f"the small CNN, CPU\n\n{meta}\n\n{table}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
