"""Arrays stored in ``.npz`` archives."""

from __future__ import annotations

import tokenize
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ._common import MissingSplitError, _channels_first, _check_split, _dataset, _labels
from .dataset import Dataset

__all__ = ["load_npz"]

_NPZ_KEYS = (("x", "y"), ("x_test", "y_test"), ("x_train", "y_train"), ("X", "y"),
             ("images", "labels"), ("data", "labels"), ("features", "labels"))


def load_npz(path: str | Path, *, x_key: str | None = None, y_key: str | None = None,
             split: str | None = None, scale: float | None = None, name: str | None = None,
             classes: Iterable[str] | None = None) -> Dataset:
    """Load inputs and labels from an ``.npz`` archive.

    Args:
        path: the ``.npz`` file.
        x_key, y_key: array names; by default the first present pair of ``x``/``y``,
            ``x_test``/``y_test``, ``x_train``/``y_train``, ``X``/``y``, ``images``/``labels``.
        split: ``"test"`` or ``"train"`` picks ``x_<split>``/``y_<split>`` (overridden by keys).
        scale: factor to [0, 1]; default 1/255 for uint8, 1/65535 for uint16, 1 for floats.
        name: name for reports; default the file stem.
        classes: class names; default the archive's ``classes`` / ``class_names`` array if any.

    Images stored ``(N, H, W, C)`` with C in {1, 3, 4} are moved to ``(N, C, H, W)``;
    ``(N, H, W)`` gets a channel axis.
    """
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz archive ({exc}); expected a complete "
                         "file written by numpy.savez") from exc
    try:
        with archive as z:
            return _read_npz(path, z, x_key, y_key, split, scale, name, classes)
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error, tokenize.TokenError,
            SyntaxError) as exc:  # a truncated or damaged member
        raise ValueError(f"{path}: damaged .npz archive ({type(exc).__name__}: {exc}); expected "
                         "a complete file written by numpy.savez") from exc


def _read_npz(path: Path, z, x_key: str | None, y_key: str | None, split: str | None,
              scale: float | None, name: str | None, classes: Iterable[str] | None) -> Dataset:
    keys = set(z.files)
    if split is not None:
        _check_split(split)
        x_key = x_key or f"x_{split}"
        y_key = y_key or f"y_{split}"
    if x_key is None or y_key is None:
        pairs = [(a, b) for a, b in _NPZ_KEYS
                 if (x_key in (None, a)) and (y_key in (None, b)) and a in keys and b in keys]
        if not pairs:
            raise ValueError(
                f"{path}: no input/label arrays found; it holds {sorted(keys)}; expected one "
                f"of the pairs {[f'{a}/{b}' for a, b in _NPZ_KEYS]} or pass x_key=, y_key=")
        x_key, y_key = pairs[0]
    for k in (x_key, y_key):
        if k not in keys:
            error = MissingSplitError if split is not None else ValueError
            raise error(f"{path}: no array named {k!r}; it holds {sorted(keys)}")
    x, y = z[x_key], z[y_key]
    if classes is None:
        for k in ("classes", "class_names"):
            if k in keys:
                classes = [str(c) for c in z[k].tolist()]
                break
    where = f"{path}[{x_key!r}]"
    if x.ndim < 2:
        raise ValueError(f"{where}: inputs must have shape (N, ...); got {x.shape}")
    y = _labels(y, f"{path}[{y_key!r}]")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{path}: {x_key!r} holds {x.shape[0]} inputs but {y_key!r} holds "
                         f"{y.shape[0]} labels")
    if x.shape[0] == 0:
        raise ValueError(f"{where}: holds no points (shape {x.shape}); expected at least one "
                         "input with its label")
    x = _channels_first(x)
    return _dataset(x, y, name or path.stem, path, classes, where, scale)
