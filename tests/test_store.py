"""The per-batch store: a corrupt batch is reported, a resumed progress bar shows real speed."""

import re
import time

import numpy as np
import pytest

from robcurves.results import Distances
from robcurves.store import BatchStore, run_batches


def _part(a: int, b: int) -> Distances:
    return Distances(distances=np.full(b - a, 0.5), labels=np.zeros(b - a, int),
                     predictions=np.zeros(b - a, int), indices=np.arange(a, b),
                     norm=float("inf"), method="test", kind="upper", settings={}, cost={})


def test_a_corrupt_batch_is_recomputed_with_a_warning_naming_the_file(tmp_path):
    store = BatchStore(tmp_path, {"run": 1})
    store.put(0, 10, _part(0, 10))
    path = next(tmp_path.glob("batch-*.npz"))
    path.write_bytes(path.read_bytes()[:50])  # torn write
    calls = []
    with pytest.warns(UserWarning, match=re.escape(str(path)) + r" is unreadable .*points 0\.\.9"):
        out = run_batches(10, 10, lambda a, b: calls.append((a, b)) or _part(a, b), store)
    assert calls == [(0, 10)] and out.n == 10


def test_a_resumed_progress_bar_counts_only_the_points_computed_now(tmp_path, capsys):
    store = BatchStore(tmp_path, {"run": 1})
    for a in range(0, 900, 100):
        store.put(a, a + 100, _part(a, a + 100))

    def compute(a, b):
        time.sleep(0.3)  # 100 points in >= 0.3 s: at most 333 points/s
        return _part(a, b)

    run_batches(1000, 100, compute, store, progress="resume")
    err = capsys.readouterr().err
    rates = [float(r) for r in re.findall(r"([0-9.]+)pt/s", err)]
    assert rates and max(rates) < 400, err  # not the 900 stored points counted as done now
