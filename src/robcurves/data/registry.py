"""Data sets by name: :func:`register` a loader, :func:`load` a name or a path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .dataset import Dataset

__all__ = ["load", "register", "registered", "data_dirs"]


_REGISTRY: dict[str, Callable[..., Dataset]] = {}


def register(name: str, loader: Callable[..., Dataset]) -> None:
    """Register ``loader`` (a callable returning a :class:`Dataset`) under ``name``."""
    _REGISTRY[name.lower()] = loader


def registered() -> list[str]:
    """Names that :func:`load` accepts besides paths."""
    return sorted(_REGISTRY)


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]  # (1797, 1, 8, 8), values 0..16
    return Dataset(x=x, y=d.target.astype(np.int64), name="digits",
                   classes=tuple(str(c) for c in range(10)), source="sklearn.datasets.load_digits",
                   info={"levels": 17})


register("digits", _digits)


def data_dirs() -> list[Path]:
    """Folders searched for named data sets: ``$ROBCURVES_DATA`` (``os.pathsep``-separated),
    then ``/usr/share/datasets`` (where Debian's ``dataset-fashion-mnist`` installs)."""
    import os

    env = [Path(p) for p in os.environ.get("ROBCURVES_DATA", "").split(os.pathsep) if p]
    return [*env, Path("/usr/share/datasets")]


def _named_idx(folder: str, pretty: str) -> Callable[..., Dataset]:
    def loader(split: str = "test", **kwargs) -> Dataset:
        from .idx import load_idx

        tried = []
        for base in data_dirs():
            cand = base / folder
            tried.append(str(cand))
            if cand.is_dir():
                return load_idx(cand, split=split, **kwargs)
        raise FileNotFoundError(
            f"{pretty} not found; looked in {', '.join(tried)}. Put the IDX files "
            f"(t10k-images-idx3-ubyte.gz, ...) in $ROBCURVES_DATA/{folder} or pass a path")

    return loader


register("mnist", _named_idx("mnist", "MNIST"))
register("fashion-mnist", _named_idx("fashion-mnist", "Fashion-MNIST"))
register("fmnist", _named_idx("fashion-mnist", "Fashion-MNIST"))


def load(source: str | Path, **kwargs) -> Dataset:
    """Load a data set by registered name or from a path.

    Args:
        source: a name from :func:`registered` or a path to a file/folder on disk.
        **kwargs: format options passed to the loader (for example ``x_key``/``y_key`` for npz).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the format is not recognised or the contents are invalid.
    """
    key = str(source).lower()
    if key in _REGISTRY and not Path(str(source)).exists():
        return _REGISTRY[key](**kwargs)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"data source {str(source)!r} is neither a registered name ({', '.join(registered())})"
            " nor an existing path")
    from .formats import load_path

    return load_path(path, **kwargs)
