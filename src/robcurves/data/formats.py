"""The data formats people keep on disk, behind one entry point: :func:`load_path`.

Each format family has its module: :mod:`.idx` (MNIST IDX), :mod:`.arrays` (npz),
:mod:`.images` (CIFAR, image folders and archives, GTSRB, Tiny-ImageNet) and :mod:`.tabular`
(UCI HAR); this module detects the format of a path and calls the right loader.

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

import re
from collections.abc import Callable
from pathlib import Path

from ._common import _SPLITS, IMAGE_SUFFIXES
from .arrays import load_npz
from .dataset import Dataset
from .idx import _is_idx_file, load_idx, read_idx
from .images import (
    _open_tar,
    load_cifar,
    load_gtsrb,
    load_image_archive,
    load_image_folder,
    load_tiny_imagenet,
)
from .tabular import load_uci_har

__all__ = [
    "load_path", "load_idx", "load_npz", "read_idx", "load_cifar", "load_image_folder",
    "load_image_archive", "load_gtsrb", "load_tiny_imagenet", "load_uci_har", "IMAGE_SUFFIXES",
]


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
