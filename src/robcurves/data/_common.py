"""Helpers shared by the format loaders: stored values to float32 in [0, 1], label vectors,
image decoding and stacking, and the :class:`~robcurves.data.dataset.Dataset` they all return."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .dataset import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".gif", ".tif", ".tiff")
_SPLITS = ("test", "train")


class MissingSplitError(ValueError):
    """The data source has no such split (raised by loaders asked for a split they lack)."""


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
