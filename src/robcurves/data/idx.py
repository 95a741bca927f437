"""IDX files (MNIST, Fashion-MNIST), gzipped or raw."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ._common import _channels_first, _check_split, _dataset, _labels, _open_maybe_gzip
from .dataset import Dataset

__all__ = ["load_idx", "read_idx"]

_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzipped or raw) into a numpy array of its stored dtype."""
    path = Path(path)
    raw = _open_maybe_gzip(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (expected magic bytes 00 00 <type> <ndim>, "
                         f"type one of {sorted(hex(k) for k in _IDX_DTYPES)}); "
                         f"found {raw[:4].hex(' ') or 'an empty file'}")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: IDX header truncated (needs {header} bytes, "
                         f"file has {len(raw)})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: IDX header announces shape {dims} ({expected} bytes with "
                         f"header) but the file holds {len(raw)} bytes")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def _idx_candidates(folder: Path, stem: str) -> list[Path]:
    """Files in ``folder`` named ``stem`` with or without .gz, with '-' or '.' before 'idx'."""
    names = {stem, stem.replace("-idx", ".idx")}
    return [folder / (n + s) for n in sorted(names) for s in (".gz", "")
            if (folder / (n + s)).is_file()]


def _idx_labels_for(images: Path) -> Path:
    name = images.name
    guess = name.replace("images", "labels").replace("idx3", "idx1")
    if guess != name and (images.parent / guess).is_file():
        return images.parent / guess
    stem = guess[:-3] if guess.endswith(".gz") else guess
    found = _idx_candidates(images.parent, stem)
    if found:
        return found[0]
    raise FileNotFoundError(f"{images}: no labels file next to it (looked for {guess!r} "
                            "with or without .gz); pass labels=PATH")


def load_idx(path: str | Path, *, split: str = "test", labels: str | Path | None = None,
             name: str | None = None, classes: Iterable[str] | None = None) -> Dataset:
    """Load MNIST-style IDX data.

    Args:
        path: the images IDX file (``.gz`` or raw), or a folder holding the official names
            ``t10k-images-idx3-ubyte[.gz]`` (``split="test"``) / ``train-images-idx3-ubyte[.gz]``
            (``split="train"``).
        split: which split to take from a folder.
        labels: the labels IDX file; by default found next to the images file.
        name: name for reports; default from the folder (``"mnist-test"``).
        classes: class names; default ``"0".."9"``-style names from the label range.
    """
    path = Path(path)
    if path.is_dir():
        prefix = "t10k" if _check_split(split) == "test" else "train"
        found = _idx_candidates(path, f"{prefix}-images-idx3-ubyte")
        if not found:
            raise FileNotFoundError(f"{path}: no {prefix}-images-idx3-ubyte[.gz] for "
                                    f"split={split!r}")
        images = found[0]
        default_name = f"{path.resolve().name}-{split}"
    else:
        images = path
        split_guess = "train" if images.name.startswith("train") else "test"
        default_name = f"{images.resolve().parent.name}-{split_guess}"
    labels_path = Path(labels) if labels is not None else _idx_labels_for(images)
    x = read_idx(images)
    y = read_idx(labels_path)
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"{images}: expected images of shape (N, H, W) or (N, D); got {x.shape}")
    if y.ndim != 1:
        raise ValueError(f"{labels_path}: expected a labels vector (N,); got shape {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{images} holds {x.shape[0]} images but {labels_path} holds "
                         f"{y.shape[0]} labels")
    y = _labels(y, str(labels_path))
    x = _channels_first(x) if x.ndim >= 3 else x
    return _dataset(x, y, name or default_name, images, classes, str(images))


def _is_idx_file(path: Path) -> bool:
    if "idx" in path.name.lower():
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return len(head) == 4 and head[0] == 0 and head[1] == 0 and head[2] in _IDX_DTYPES
