"""Per-batch results on disk, so a long run can be interrupted and resumed.

A :class:`BatchStore` is a folder holding ``manifest.json`` (the settings of the run) and one
``batch-<start>-<stop>.npz`` per finished batch of points, each written atomically. Reopening
the folder with the same settings returns the finished batches; different settings are refused
rather than mixed, unless no batch was finished yet (a run stopped by a bad option before its
first batch leaves only the manifest, which the next run replaces).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .model import TorchClassifier
from .results import Distances

__all__ = ["BatchStore", "batch_spans", "fingerprint_data", "fingerprint_model", "run_batches"]


def fingerprint_model(model: object) -> str:
    """A hash of a torch model's parameters and buffers (empty for other models)."""
    if not isinstance(model, TorchClassifier):
        return ""
    h = hashlib.sha256()
    for k, v in model.module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    for t in (model.mean, model.std):
        if t is not None:
            h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint_data(*arrays: np.ndarray) -> str:
    """A hash of the arrays' bytes (identifies the points a stored run was computed on)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


class BatchStore:
    """Finished batches of one run (one model, data, norm and attack configuration)."""

    def __init__(self, root: str | Path, settings: dict) -> None:
        self.root = Path(root)
        self.settings = json.loads(json.dumps(settings, sort_keys=True))
        self.root.mkdir(parents=True, exist_ok=True)
        manifest = self.root / "manifest.json"
        old = json.loads(manifest.read_text()) if manifest.exists() else None
        if old is not None and old != self.settings and self._has_batches():
            diff = sorted(k for k in set(old) | set(self.settings)
                          if old.get(k) != self.settings.get(k))
            raise ValueError(
                f"{self.root} holds results of a run with other settings (differing: "
                f"{', '.join(diff)}); use another output folder or delete this one")
        if old != self.settings:
            # new, or left by a run stopped before its first batch (a bad option refused by
            # the attack): nothing computed to keep apart
            _atomic_write(manifest, json.dumps(self.settings, indent=1, sort_keys=True))

    def _has_batches(self) -> bool:
        return any(self.root.glob("batch-*"))

    def _path(self, start: int, stop: int) -> Path:
        return self.root / f"batch-{start:09d}-{stop:09d}.npz"

    def get(self, start: int, stop: int) -> Distances | None:
        """The stored result of points ``start:stop``, or None if not finished."""
        path = self._path(start, stop)
        if not path.exists():
            return None
        try:
            return Distances.load_npz(path)
        except Exception as exc:  # noqa: BLE001 - a torn or corrupted file: recompute it
            warnings.warn(f"{path} is unreadable ({type(exc).__name__}: {exc}); deleted, its "
                          f"points {start}..{stop - 1} are computed again", stacklevel=2)
            path.unlink(missing_ok=True)
            return None

    def put(self, start: int, stop: int, result: Distances) -> None:
        path = self._path(start, stop)
        tmp = path.with_name(path.name + ".tmp.npz")
        result.save_npz(tmp)
        os.replace(tmp, path)


def batch_spans(n: int, batch_size: int) -> list[tuple[int, int]]:
    """The batches ``(start, stop)`` of ``n`` points: consecutive, ``batch_size`` each (the
    last one shorter). Every backend cuts a run this way, so their stores are the same."""
    return [(a, min(a + batch_size, n)) for a in range(0, n, batch_size)]


def run_batches(n: int, batch_size: int, compute: Callable[..., Distances],
                store: BatchStore | None = None, progress: str | None = None,
                ticks: bool = False) -> Distances:
    """Compute ``compute(start, stop)`` for consecutive batches of ``n`` points and join them.

    With a ``store``, finished batches are read back instead of recomputed and each new batch
    is saved as soon as it is done, so an interrupted run loses at most the batch in progress.
    ``progress`` is the label of a progress bar (none if ``None``). With ``ticks=True``,
    ``compute(start, stop, tick)`` gets a callback ``tick(fraction)`` that moves the bar by that
    fraction of the batch's points while the batch runs.
    """
    spans = batch_spans(n, batch_size)
    done = {s: store.get(*s) for s in spans} if store is not None else {}
    done = {s: part for s, part in done.items() if part is not None}
    bar = None
    if progress is not None:
        from tqdm.auto import tqdm

        # stored batches are the bar's starting point, not work done at some absurd rate
        bar = tqdm(total=n, initial=sum(b - a for a, b in done), desc=progress, unit="pt")
    parts: list[Distances] = []
    try:
        for start, stop in spans:
            part = done.get((start, stop))
            shown = [0.0, 0]  # fraction of this batch done, points shown for it

            def tick(fraction: float, start: int = start, stop: int = stop,
                     shown: list = shown) -> None:
                shown[0] += fraction
                now = min(stop - start, int(shown[0] * (stop - start)))
                if bar is not None and now > shown[1]:
                    bar.update(now - shown[1])
                    shown[1] = now

            if part is None:
                part = compute(start, stop, tick) if ticks else compute(start, stop)
                if store is not None:
                    store.put(start, stop, part)
                if bar is not None:
                    bar.update(stop - start - shown[1])
            parts.append(part)
            if bar is not None:
                d = np.concatenate([q.distances for q in parts])
                bar.set_postfix(median=f"{np.median(d):.4g}", inf=int(np.isinf(d).sum()))
    finally:
        if bar is not None:
            bar.close()
    return Distances.concatenate(parts)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
