"""Image data: CIFAR python batches, ``<class>/<image>`` folders and tar archives, GTSRB and
Tiny-ImageNet-200."""

from __future__ import annotations

import csv
import pickle
import tarfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ._common import (
    IMAGE_SUFFIXES,
    MissingSplitError,
    _check_split,
    _dataset,
    _decode_image,
    _labels,
    _stack_images,
)
from .dataset import Dataset

__all__ = ["load_cifar", "load_image_folder", "load_image_archive", "load_gtsrb",
           "load_tiny_imagenet"]


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
                raise MissingSplitError(f"{path}: no images under a {want!r} folder")
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
            raise MissingSplitError(f"{path}: no {split} images found")
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
