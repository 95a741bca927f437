"""Loaders for the data formats people keep on disk, behind one entry point: :func:`load_path`.

Every loader returns a :class:`~robcurves.data.Dataset`: float32 inputs in [0, 1] (images
channels-first ``(N, C, H, W)``, feature vectors ``(N, D)``), int64 labels, class names where the
format has them. Data stored as 8-bit images (IDX bytes, uint8 npz, PNG/JPEG/PPM, CIFAR batches)
is divided by 255 and carries ``info={"bit_depth": 8}``.

Formats recognised by :func:`load_path`:

* **IDX** (MNIST, Fashion-MNIST; gzipped or raw): the images file, or a folder holding the
  official names ``t10k-images-idx3-ubyte[.gz]`` / ``train-images-idx3-ubyte[.gz]`` (with
  ``split="test"|"train"``). The labels file is found next to the images file.
* **npz**: keys ``x_key``/``y_key`` (default: ``x``/``y``, else ``x_test``/``y_test``, else
  ``x_train``/``y_train``); an optional ``classes`` array of names.
* **CIFAR-10/100 python batches** (``cifar-10-batches-py``, ``cifar-100-python``), a folder or
  one batch file.
* **Image folders and tar archives** ``root/<class>/*.png|jpg|jpeg|ppm|bmp`` (also one level
  deeper, e.g. ``test/<class>/...`` inside an archive).
* **GTSRB** ``Final_Test`` (``GT-final_test.csv`` with ``Filename;...;ClassId`` rows and the
  ``.ppm`` images), also the training layout ``Final_Training/Images/<class>/GT-<class>.csv``.
* **Tiny-ImageNet-200**: the ``train`` folder layout (``train/<wnid>/images/*.JPEG``) and ``val``
  with ``val_annotations.txt``; a folder or the tar archive.
* **UCI HAR** text: ``X_test.txt`` / ``y_test.txt`` (see :func:`load_uci_har` for the rescaling).
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from . import Dataset

__all__ = ["load_path", "load_idx", "load_npz", "read_idx", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".gif", ".tif", ".tiff")
_SPLITS = ("test", "train")


# ----------------------------------------------------------------------------------------------
# helpers


def _check_split(split: str) -> str:
    if split not in _SPLITS:
        raise ValueError(f"split must be 'test' or 'train'; got {split!r}")
    return split


def _open_maybe_gzip(path: Path) -> bytes:
    with open(path, "rb") as fh:
        head = fh.read(2)
        fh.seek(0)
        if head == b"\x1f\x8b":
            try:
                return gzip.decompress(fh.read())
            except (OSError, EOFError) as exc:
                raise ValueError(f"{path}: corrupt gzip stream ({exc})") from exc
        return fh.read()


def _to_unit_float(x: np.ndarray, where: str,
                   scale: float | None = None) -> tuple[np.ndarray, dict]:
    """Convert stored values to float32 in [0, 1]; returns the array and info facts."""
    info: dict = {}
    if scale is None:
        if x.dtype == np.uint8:
            scale, info = 1.0 / 255.0, {"bit_depth": 8}
        elif x.dtype == np.uint16:
            scale, info = 1.0 / 65535.0, {"bit_depth": 16}
        elif x.dtype == np.bool_:
            scale = 1.0
        elif np.issubdtype(x.dtype, np.floating):
            scale = 1.0
        else:
            raise ValueError(f"{where}: inputs of dtype {x.dtype} have no default scale to [0, 1];"
                             " expected uint8, uint16 or float (pass scale=...)")
    out = x.astype(np.float32) * np.float32(scale) if scale != 1.0 else x.astype(np.float32)
    if out.size:
        bad = ~np.isfinite(out)
        if bad.any():
            raise ValueError(f"{where}: inputs contain {int(bad.sum())} non-finite values")
        lo, hi = float(out.min()), float(out.max())
        if lo < 0.0 or hi > 1.0:
            hint = " (looks like 0..255 pixel values: pass scale=1/255)" if hi <= 255.0 else ""
            raise ValueError(f"{where}: inputs must lie in [0, 1] after scaling by {scale}; "
                             f"found min {lo}, max {hi}{hint}")
    return np.ascontiguousarray(out), info


def _channels_first(x: np.ndarray) -> np.ndarray:
    """(N,H,W) -> (N,1,H,W); (N,H,W,C) with C in {1,3,4} -> (N,C,H,W); others unchanged."""
    if x.ndim == 3:
        return x[:, None, :, :]
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1 and np.isin(y, (0, 1)).all() and (y.sum(1) == 1).all():
        y = y.argmax(axis=1)  # one-hot
    y = y.reshape(-1) if y.ndim == 2 and 1 in y.shape else y
    if y.ndim != 1:
        raise ValueError(f"{where}: labels must be a vector (N,) or one-hot (N, K); "
                         f"got shape {y.shape}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError(f"{where}: labels must be whole numbers; got non-integer floats")
    elif not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where}: labels must be integers; got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"{where}: labels must be non-negative class indices; "
                         f"found min {int(y.min())}")
    return y


def _decode_image(data: bytes | Path, where: str) -> np.ndarray:
    """Decode one image file to uint8 (H, W, C) RGB (grayscale stays one channel)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
            if im.mode not in ("L", "RGB"):
                im = im.convert("L" if im.mode in ("1", "I", "I;16", "F", "LA") else "RGB")
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{where}: not a readable image ({exc})") from exc
    return arr[:, :, None] if arr.ndim == 2 else arr


def _stack_images(images: list[np.ndarray], names: list[str], size: tuple[int, int] | None,
                  where: str) -> np.ndarray:
    """Stack decoded images to (N, C, H, W) uint8; resize to ``size`` (H, W) if given."""
    if not images:
        raise ValueError(f"{where}: no images found (expected {', '.join(IMAGE_SUFFIXES)})")
    if size is not None:
        from PIL import Image

        h, w = size
        out = []
        for a in images:
            if a.shape[:2] != (h, w):
                im = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
                a = np.asarray(im.resize((w, h), Image.BILINEAR), dtype=np.uint8)
                a = a[:, :, None] if a.ndim == 2 else a
            out.append(a)
        images = out
    channels = max(a.shape[2] for a in images)
    if channels == 3:  # mixed grayscale / RGB folders: promote grey to RGB
        images = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in images]
    shape0 = images[0].shape
    for a, n in zip(images, names, strict=True):
        if a.shape != shape0:
            raise ValueError(f"{where}: images differ in size: {names[0]} is {shape0[:2]} but "
                             f"{n} is {a.shape[:2]}; pass size=(H, W) to resize")
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))


def _dataset(x_raw: np.ndarray, y: np.ndarray, name: str, source: Path | str,
             classes: Iterable[str] | None, where: str, scale: float | None = None,
             extra_info: dict | None = None) -> Dataset:
    x, info = _to_unit_float(x_raw, where, scale)
    info.update(extra_info or {})
    cls = tuple(str(c) for c in classes) if classes is not None else None
    if cls is not None and y.size and int(y.max()) >= len(cls):
        raise ValueError(f"{where}: label {int(y.max())} has no class name "
                         f"({len(cls)} classes given)")
    return Dataset(x=x, y=y, name=name, classes=cls, source=str(source), info=info)


# ----------------------------------------------------------------------------------------------
# IDX

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


# ----------------------------------------------------------------------------------------------
# npz

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
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npz archive ({exc})") from exc
    with archive as z:
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
                raise ValueError(f"{path}: no array named {k!r}; it holds {sorted(keys)}")
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
    x = _channels_first(x)
    return _dataset(x, y, name or path.stem, path, classes, where, scale)


# ----------------------------------------------------------------------------------------------
# dispatch


def _dir_format(path: Path) -> Callable[..., Dataset] | None:
    names = {p.name for p in path.iterdir()}
    if any(re.fullmatch(r"(t10k|train)-images[-.]idx3-ubyte(\.gz)?", n) for n in names):
        return load_idx
    return None


def load_path(path: str | Path, **kwargs) -> Dataset:
    """Load a data set from ``path``, detecting its format (see the module docstring).

    Keyword arguments go to the format's loader (for example ``split="train"`` for IDX and
    CIFAR folders, ``x_key``/``y_key`` for npz). Raises ``FileNotFoundError`` for a missing path
    and ``ValueError`` naming the file when the format is unknown or the contents are invalid.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        loader = _dir_format(path)
        if loader is None:
            raise ValueError(f"{path}: folder layout not recognised; expected MNIST IDX files, "
                             "cifar-10-batches-py, Tiny-ImageNet, GTSRB Final_Test, UCI HAR "
                             "X_test.txt/y_test.txt or <class>/<images> folders")
        return loader(path, **kwargs)
    lower = path.name.lower()
    if lower.endswith(".npz"):
        return load_npz(path, **kwargs)
    if _is_idx_file(path):
        return load_idx(path, **kwargs)
    raise ValueError(f"{path}: file format not recognised; expected .npz, IDX (MNIST), "
                     "a CIFAR python batch, or a .tar/.tar.gz/.tgz image archive")
