"""Tabular feature vectors: UCI HAR text files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import _check_split, _dataset
from .dataset import Dataset

__all__ = ["load_uci_har", "HAR_ACTIVITIES"]

HAR_ACTIVITIES = ("WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING",
                  "LAYING")


def load_uci_har(path: str | Path, *, split: str = "test", name: str | None = None) -> Dataset:
    """Load UCI HAR (Human Activity Recognition Using Smartphones) 561-feature vectors.

    Reads ``[<split>/]X_<split>.txt`` (whitespace-separated floats, one sample a line) and
    ``y_<split>.txt`` (labels 1..6, mapped to 0..5). **Rescaling rule:** the data set's authors
    normalised every feature into [-1, 1]; the loader maps it to [0, 1] by ``(v + 1) / 2``, so
    a distance in the loaded units is half the distance in the published units. A value outside
    [-1, 1] raises an error (it is not the published data). Class names come from
    ``activity_labels.txt`` when present.
    """
    root = Path(path)
    _check_split(split)
    folder = root / split if (root / split / f"X_{split}.txt").exists() else root
    xf, yf = folder / f"X_{split}.txt", folder / f"y_{split}.txt"
    for f in (xf, yf):
        if not f.exists():
            raise FileNotFoundError(f"{f}: missing UCI HAR file")
    try:
        x = np.loadtxt(xf, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{xf}: expected whitespace-separated numbers ({exc})") from exc
    try:
        y_raw = np.loadtxt(yf, dtype=np.float64, ndmin=1)
    except ValueError as exc:
        raise ValueError(f"{yf}: expected one integer label per line ({exc})") from exc
    if x.shape[0] != y_raw.shape[0]:
        raise ValueError(f"{xf} holds {x.shape[0]} rows but {yf} holds {y_raw.shape[0]} labels")
    bad = (y_raw < 1) | (y_raw > 6) | (y_raw != np.round(y_raw))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{yf}, line {i + 1}: label {float(y_raw[i]):g} is not one of 1..6")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 or hi > 1.0:
        raise ValueError(f"{xf}: UCI HAR features must lie in [-1, 1]; found min {lo}, max {hi}")
    classes: list[str] = list(HAR_ACTIVITIES)
    labels_file = root / "activity_labels.txt"
    if labels_file.exists():
        pairs = [line.split() for line in labels_file.read_text().splitlines() if line.strip()]
        if len(pairs) == 6 and all(len(pp) == 2 for pp in pairs):
            classes = [pp[1] for pp in sorted(pairs, key=lambda pp: int(pp[0]))]
    xs = np.clip((x + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)
    return _dataset(xs, y_raw.astype(np.int64) - 1, name or f"uci-har-{split}", path, classes,
                    str(xf), scale=1.0, extra_info={"rescale": "(v + 1) / 2 from [-1, 1]"})
