"""Per-batch results on disk, so a long run can be interrupted and resumed.

A :class:`BatchStore` is a folder holding ``manifest.json`` (the settings of the run) and one
``batch-<start>-<stop>.npz`` per finished batch of points, each written atomically. Reopening
the folder with the same settings returns the finished batches; different settings are refused
rather than mixed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .results import Distances

__all__ = ["BatchStore"]


class BatchStore:
    """Finished batches of one run (one model, data, norm and attack configuration)."""

    def __init__(self, root: str | Path, settings: dict) -> None:
        self.root = Path(root)
        self.settings = json.loads(json.dumps(settings, sort_keys=True))
        self.root.mkdir(parents=True, exist_ok=True)
        manifest = self.root / "manifest.json"
        if manifest.exists():
            old = json.loads(manifest.read_text())
            if old != self.settings:
                diff = sorted(k for k in set(old) | set(self.settings)
                              if old.get(k) != self.settings.get(k))
                raise ValueError(
                    f"{self.root} holds results of a run with other settings (differing: "
                    f"{', '.join(diff)}); use another output folder or delete this one")
        else:
            _atomic_write(manifest, json.dumps(self.settings, indent=1, sort_keys=True))

    def _path(self, start: int, stop: int) -> Path:
        return self.root / f"batch-{start:09d}-{stop:09d}.npz"

    def get(self, start: int, stop: int) -> Distances | None:
        """The stored result of points ``start:stop``, or None if not finished."""
        path = self._path(start, stop)
        if not path.exists():
            return None
        try:
            return Distances.load_npz(path)
        except Exception:  # a torn or corrupted file: recompute rather than trust it
            path.unlink(missing_ok=True)
            return None

    def put(self, start: int, stop: int, result: Distances) -> None:
        path = self._path(start, stop)
        tmp = path.with_name(path.name + ".tmp.npz")
        result.save_npz(tmp)
        os.replace(tmp, path)

    def done(self) -> list[tuple[int, int]]:
        out = []
        for p in sorted(self.root.glob("batch-*-*.npz")):
            if p.name.endswith(".tmp.npz"):
                continue
            a, b = p.stem.split("-")[1:3]
            out.append((int(a), int(b)))
        return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
