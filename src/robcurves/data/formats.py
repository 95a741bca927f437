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

import csv
import gzip
import io
import pickle
import re
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from . import Dataset

__all__ = [
    "load_path", "load_idx", "load_npz", "read_idx", "load_cifar", "load_image_folder",
    "load_image_archive", "load_gtsrb", "load_tiny_imagenet", "load_uci_har", "IMAGE_SUFFIXES",
]

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
    if scale == 1.0:
        out = x.astype(np.float32)
    else:  # divide by an integer max (255) exactly, so stored k becomes the float32 nearest k/255
        inv = 1.0 / scale
        div = round(inv) if abs(inv - round(inv)) < 1e-9 * inv else None
        out = (x.astype(np.float64) / div if div else x.astype(np.float64) * scale
               ).astype(np.float32)
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
# CIFAR python batches

_CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError) as exc:
        raise ValueError(f"{path}: not a CIFAR python batch (pickle failed: {exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a CIFAR python batch (expected a dict, got "
                         f"{type(obj).__name__})")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _names(meta: dict, key: str) -> list[str] | None:
    vals = meta.get(key)
    return None if vals is None else [v.decode() if isinstance(v, bytes) else str(v)
                                      for v in vals]


def load_cifar(path: str | Path, *, split: str = "test", labels: str = "fine",
               name: str | None = None) -> Dataset:
    """Load CIFAR-10 (``cifar-10-batches-py``) or CIFAR-100 (``cifar-100-python``) batches.

    Args:
        path: the folder, or one batch file (``test_batch``, ``data_batch_1``, ``test``...).
        split: ``"test"`` or ``"train"`` (all five CIFAR-10 training batches) for a folder.
        labels: CIFAR-100 only: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).
        name: name for reports; default ``cifar10-test`` / ``cifar100-train``...

    The batches are Python pickles: only load files you trust.
    """
    path = Path(path)
    if labels not in ("fine", "coarse"):
        raise ValueError(f"labels must be 'fine' or 'coarse'; got {labels!r}")
    if path.is_dir():
        _check_split(split)
        if (path / "test_batch").exists() or (path / "data_batch_1").exists():
            files = [path / "test_batch"] if split == "test" else [path / f for f in
                                                                   _CIFAR10_TRAIN]
        elif (path / "meta").exists():
            files = [path / split]
        else:
            raise ValueError(f"{path}: no CIFAR batches (expected test_batch/data_batch_N or "
                             "test/train with meta)")
        folder = path
    else:
        files, folder = [path], path.parent
        split = "train" if "train" in path.name or "data_batch" in path.name else "test"
    for f in files:
        if not f.exists():
            raise FileNotFoundError(f"{f}: missing CIFAR batch for split={split!r}")
    xs, ys, hundred = [], [], False
    for f in files:
        b = _unpickle(f)
        key = next((k for k in ("labels", f"{labels}_labels") if k in b), None)
        if "data" not in b or key is None:
            raise ValueError(f"{f}: CIFAR batch must hold 'data' and 'labels' (or "
                             f"'fine_labels'); found keys {sorted(b)}")
        hundred = key != "labels"
        data = np.asarray(b["data"])
        if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
            raise ValueError(f"{f}: 'data' must be uint8 of shape (N, 3072); got "
                             f"{data.dtype} {data.shape}")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(_labels(np.asarray(b[key]), f"{f}[{key!r}]"))
    classes = None
    meta_file = folder / ("meta" if hundred else "batches.meta")
    if meta_file.exists():
        meta = _unpickle(meta_file)
        classes = _names(meta, f"{labels}_label_names" if hundred else "label_names")
    default = f"cifar{100 if hundred else 10}-{split}"
    return _dataset(np.concatenate(xs), np.concatenate(ys), name or default, path, classes,
                    str(path))


# ----------------------------------------------------------------------------------------------
# image folders and archives


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def load_image_folder(path: str | Path, *, split: str | None = None,
                      size: tuple[int, int] | None = None, name: str | None = None) -> Dataset:
    """Load ``root/<class>/<image>`` (PNG, JPEG, PPM, BMP...); classes sorted by name.

    If ``root`` holds ``test``/``train`` folders of class folders, ``split`` picks one (default
    ``test``). Images of different sizes need ``size=(H, W)`` (bilinear resize).
    """
    root = Path(path)
    if split is not None or ((root / "test").is_dir() and not _has_images(root / "test")):
        split = _check_split(split or "test")
        if (root / split).is_dir():
            root = root / split
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir())
    if not class_dirs:
        raise ValueError(f"{root}: expected one folder per class holding images")
    images, names, ys = [], [], []
    for c, d in enumerate(class_dirs):
        for f in sorted(d.iterdir()):
            if f.is_file() and _is_image(f.name):
                images.append(_decode_image(f, str(f)))
                names.append(str(f))
                ys.append(c)
    x = _stack_images(images, names, size, str(root))
    nm = name or (f"{Path(path).resolve().name}-{split}" if split else root.resolve().name)
    return _dataset(x, np.asarray(ys, dtype=np.int64), nm, path,
                    [d.name for d in class_dirs], str(root))


def _has_images(folder: Path) -> bool:
    return any(f.is_file() and _is_image(f.name) for f in folder.iterdir())


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ValueError(f"{path}: not a readable tar archive ({exc})") from exc


def load_image_archive(path: str | Path, *, split: str | None = None,
                       size: tuple[int, int] | None = None, name: str | None = None) -> Dataset:
    """Load a ``.tar``/``.tar.gz``/``.tgz`` of ``[<split>/]<class>/<image>`` files.

    The class is each image's parent folder name; if images lie under both ``test/`` and
    ``train/`` top folders, ``split`` picks one (default ``test``).
    """
    path = Path(path)
    with _open_tar(path) as tf:
        members = [m for m in tf.getmembers() if m.isfile() and _is_image(m.name)]
        if not members:
            raise ValueError(f"{path}: archive holds no images ({', '.join(IMAGE_SUFFIXES)})")
        parts = [Path(m.name).parts for m in members]
        loose = [m.name for m, pp in zip(members, parts, strict=True) if len(pp) < 2]
        if loose:
            raise ValueError(f"{path}: images must lie in <class>/ folders; found {loose[0]!r}")
        tops = {pp[0] for pp in parts if len(pp) >= 3}
        if split is not None or {"test", "train"} <= tops:
            want = _check_split(split or "test")
            keep = [i for i, pp in enumerate(parts) if want in pp[:-2]]
            if not keep:
                raise ValueError(f"{path}: no images under a {want!r} folder")
            members = [members[i] for i in keep]
            parts = [parts[i] for i in keep]
        classes = sorted({pp[-2] for pp in parts})
        index = {c: i for i, c in enumerate(classes)}
        order = sorted(range(len(members)), key=lambda i: (index[parts[i][-2]], members[i].name))
        images, names, ys = [], [], []
        for i in order:
            m = members[i]
            fh = tf.extractfile(m)
            where = f"{path}:{m.name}"
            images.append(_decode_image(fh.read(), where))
            names.append(where)
            ys.append(index[parts[i][-2]])
    x = _stack_images(images, names, size, str(path))
    base = path.name.split(".")[0]
    return _dataset(x, np.asarray(ys, dtype=np.int64), name or base, path, classes, str(path))


# ----------------------------------------------------------------------------------------------
# GTSRB


def load_gtsrb(path: str | Path, *, size: tuple[int, int] = (32, 32), crop: bool = False,
               csv_file: str | Path | None = None, name: str | None = None) -> Dataset:
    """Load GTSRB in the official layout.

    Args:
        path: ``Final_Test/Images`` (or a parent holding it) with ``GT-final_test.csv``
            (``Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId``) next to the
            ``.ppm`` images, or ``Final_Training/Images`` with ``<class>/GT-<class>.csv``.
        size: output size (H, W); images are resized whole-frame (bilinear).
        crop: crop to the ``Roi`` box first.
        csv_file: the annotation CSV if it lies elsewhere.
        name: name for reports.
    """
    root = Path(path)
    for sub in ("GTSRB/Final_Test/Images", "Final_Test/Images", "GTSRB/Final_Training/Images",
                "Final_Training/Images", "Images"):
        if (root / sub).is_dir():
            root = root / sub
            break
    if csv_file is not None:
        tables = [(Path(csv_file), root)]
    else:
        tables = [(f, root) for f in sorted(root.glob("GT-*.csv"))]
        tables += [(f, d) for d in sorted(p for p in root.iterdir() if p.is_dir())
                   for f in sorted(d.glob("GT-*.csv"))]
        if not tables and (root.parent / "GT-final_test.csv").exists():
            tables = [(root.parent / "GT-final_test.csv", root)]
    if not tables:
        raise ValueError(f"{root}: no GTSRB annotation file GT-*.csv found")
    images, names, ys = [], [], []
    from PIL import Image

    for table, folder in tables:
        with open(table, newline="") as fh:
            reader = csv.DictReader(fh, delimiter=";")
            fields = reader.fieldnames or []
            if "Filename" not in fields or "ClassId" not in fields:
                raise ValueError(f"{table}: GTSRB CSV needs 'Filename' and 'ClassId' columns "
                                 f"(';'-separated); found {fields}")
            for lineno, row in enumerate(reader, start=2):
                f = folder / row["Filename"]
                try:
                    label = int(row["ClassId"])
                except (TypeError, ValueError):
                    raise ValueError(f"{table}, line {lineno}: ClassId {row['ClassId']!r} is "
                                     "not an integer") from None
                if not f.exists():
                    raise FileNotFoundError(f"{table}, line {lineno}: image {f} not found")
                with Image.open(f) as im:
                    im = im.convert("RGB")
                    if crop:
                        box = tuple(int(row[k]) for k in ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"))
                        im = im.crop((box[0], box[1], box[2] + 1, box[3] + 1))
                    im = im.resize((size[1], size[0]), Image.BILINEAR)
                    images.append(np.asarray(im, dtype=np.uint8))
                names.append(str(f))
                ys.append(label)
    x = _stack_images(images, names, None, str(root))
    y = _labels(np.asarray(ys, dtype=np.int64), str(root))
    split = "train" if "Training" in str(root) else "test"
    return _dataset(x, y, name or f"gtsrb-{split}", path, None, str(root),
                    extra_info={"size": list(size), "crop": crop})


# ----------------------------------------------------------------------------------------------
# Tiny-ImageNet-200


def _tiny_root(members: Iterable[str]) -> str:
    for m in members:
        if m.endswith("wnids.txt"):
            return m[: -len("wnids.txt")]
    return ""


def load_tiny_imagenet(path: str | Path, *, split: str = "val", name: str | None = None
                       ) -> Dataset:
    """Load Tiny-ImageNet-200 from its folder or tar archive.

    ``split="val"`` reads ``val/images/*.JPEG`` labelled by ``val/val_annotations.txt``;
    ``split="train"`` reads ``train/<wnid>/images/*.JPEG``. Classes are the ``wnids.txt`` order
    (names from ``words.txt`` when present). Images are 64x64 RGB (grey ones are promoted).
    """
    if split not in ("val", "train"):
        raise ValueError(f"Tiny-ImageNet split must be 'val' or 'train'; got {split!r}")
    path = Path(path)
    if path.is_dir():
        root = path / "tiny-imagenet-200" if (path / "tiny-imagenet-200").is_dir() else path
        files = {str(p.relative_to(root)).replace("\\", "/"): p for p in root.rglob("*")
                 if p.is_file()}

        def read(rel: str) -> bytes:
            return files[rel].read_bytes()
        prefix, tf = "", None
    else:
        tf = _open_tar(path)
        members = {m.name: m for m in tf.getmembers() if m.isfile()}
        prefix = _tiny_root(members)
        files = {k[len(prefix):]: v for k, v in members.items() if k.startswith(prefix)}

        def read(rel: str) -> bytes:
            return tf.extractfile(files[rel]).read()
    try:
        if "wnids.txt" not in files:
            raise ValueError(f"{path}: no wnids.txt (not a Tiny-ImageNet-200 layout)")
        wnids = read("wnids.txt").decode().split()
        index = {w: i for i, w in enumerate(wnids)}
        items: list[tuple[str, int]] = []
        if split == "val":
            if "val/val_annotations.txt" not in files:
                raise ValueError(f"{path}: no val/val_annotations.txt")
            for lineno, line in enumerate(read("val/val_annotations.txt").decode().splitlines(),
                                          start=1):
                if not line.strip():
                    continue
                cols = line.split("\t")
                if len(cols) < 2 or cols[1] not in index:
                    raise ValueError(f"{path}: val_annotations.txt line {lineno}: expected "
                                     f"'<file>\\t<wnid>...' with a wnid from wnids.txt; got "
                                     f"{line[:80]!r}")
                items.append((f"val/images/{cols[0]}", index[cols[1]]))
        else:
            for rel in sorted(files):
                parts = rel.split("/")
                if (len(parts) == 4 and parts[0] == "train" and parts[2] == "images"
                        and _is_image(parts[3])):
                    if parts[1] not in index:
                        raise ValueError(f"{path}: train folder {parts[1]!r} not in wnids.txt")
                    items.append((rel, index[parts[1]]))
        if not items:
            raise ValueError(f"{path}: no {split} images found")
        images, names = [], []
        for rel, _ in items:
            if rel not in files:
                raise FileNotFoundError(f"{path}: {rel} listed but missing")
            img = _decode_image(read(rel), f"{path}:{rel}")
            images.append(np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img)  # RGB always
            names.append(rel)
        classes = wnids
        if "words.txt" in files:
            words = dict(line.split("\t", 1) for line in read("words.txt").decode().splitlines()
                         if "\t" in line)
            classes = [words.get(w, w).split(",")[0].strip() for w in wnids]
    finally:
        if tf is not None:
            tf.close()
    x = _stack_images(images, names, None, str(path))
    y = np.asarray([c for _, c in items], dtype=np.int64)
    return _dataset(x, y, name or f"tiny-imagenet-{split}", path, classes, str(path),
                    extra_info={"wnids": wnids})


# ----------------------------------------------------------------------------------------------
# UCI HAR

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


# ----------------------------------------------------------------------------------------------
# dispatch


def _dir_format(path: Path) -> Callable[..., Dataset] | None:
    names = {p.name for p in path.iterdir()}
    if any(re.fullmatch(r"(t10k|train)-images[-.]idx3-ubyte(\.gz)?", n) for n in names):
        return load_idx
    if {"test_batch", "data_batch_1", "batches.meta"} & names or (
            "meta" in names and ({"test", "train"} & names)):
        return load_cifar
    for sub in ("cifar-10-batches-py", "cifar-100-python"):
        if sub in names:
            return lambda p, **kw: load_cifar(p / sub, **kw)
    if "wnids.txt" in names or (path / "tiny-imagenet-200" / "wnids.txt").exists():
        return load_tiny_imagenet
    if any(n.startswith("GT-") and n.endswith(".csv") for n in names) or any(
            (path / s).is_dir() for s in ("Final_Test", "Final_Training", "GTSRB")):
        return load_gtsrb
    if any((path / s / f"X_{s}.txt").exists() for s in _SPLITS) or {"X_test.txt",
                                                                      "X_train.txt"} & names:
        return load_uci_har
    if any(p.is_dir() for p in path.iterdir()):
        return load_image_folder
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
    if lower.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        with _open_tar(path) as tf:
            is_tiny = any(n.endswith("val_annotations.txt") or n.endswith("wnids.txt")
                          for n in tf.getnames())
        return (load_tiny_imagenet if is_tiny else load_image_archive)(path, **kwargs)
    if _is_idx_file(path):
        return load_idx(path, **kwargs)
    if re.fullmatch(r"(test_batch|data_batch_\d+|test|train)", path.name):
        return load_cifar(path, **kwargs)
    raise ValueError(f"{path}: file format not recognised; expected .npz, IDX (MNIST), "
                     "a CIFAR python batch, or a .tar/.tar.gz/.tgz image archive")
