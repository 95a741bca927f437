"""Data sets as float32 arrays in [0, 1] (synthetic sets: unbounded) with integer labels.

``load(source)`` accepts a registered name (``"digits"``, ...) or a path on disk. Every loader
returns a :class:`Dataset`; images are laid out channels-first, ``(N, C, H, W)``, feature
vectors as ``(N, D)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Dataset", "load", "register", "registered", "check_dataset"]


@dataclass(frozen=True)
class Dataset:
    """A labelled data set.

    Attributes:
        x: float32 inputs in [0, 1]; ``(N, C, H, W)`` for images, ``(N, D)`` for vectors.
        y: int64 labels in ``0..num_classes-1``, shape ``(N,)``.
        name: short name used in reports (``"digits"``, ``"mnist-test"``...).
        classes: class names where the format has them, else ``None``.
        source: where the data came from (path or registered name).
        info: free-form facts about the data (for example ``{"bit_depth": 8}`` for images
            stored as bytes, which reports use to print eps as x/255).
        bounds: ``(low, high)`` of valid inputs, ``(0, 1)`` for every loaded format;
            synthetic sets may be unbounded (``(-inf, inf)``, see :mod:`.synthetic`).
    """

    x: np.ndarray
    y: np.ndarray
    name: str
    classes: tuple[str, ...] | None = None
    source: str = ""
    info: dict = field(default_factory=dict)
    bounds: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        check_dataset(self.x, self.y, self.bounds)

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_classes(self) -> int:
        if self.classes is not None:
            return len(self.classes)
        return int(self.y.max()) + 1 if self.n else 0

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[1:])

    def subset(self, indices: np.ndarray | slice) -> Dataset:
        """The points at ``indices`` (keeps name, classes and info)."""
        return Dataset(
            x=self.x[indices], y=self.y[indices], name=self.name, classes=self.classes,
            source=self.source, info=dict(self.info), bounds=self.bounds,
        )


def check_dataset(x: np.ndarray, y: np.ndarray,
                  bounds: tuple[float, float] = (0.0, 1.0)) -> None:
    """Raise ``ValueError`` naming the problem if ``x``/``y`` are not a valid data set with
    inputs inside ``bounds``."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        raise ValueError(f"x must be a float32 numpy array; got {type(x).__name__} "
                         f"of dtype {getattr(x, 'dtype', None)}")
    if not isinstance(y, np.ndarray) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be an integer numpy array; got {type(y).__name__} "
                         f"of dtype {getattr(y, 'dtype', None)}")
    if y.ndim != 1:
        raise ValueError(f"y must be one-dimensional (N,); got shape {y.shape}")
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, ...) with at least 2 dimensions; got {x.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same length; got {x.shape[0]} inputs "
                         f"and {y.shape[0]} labels")
    if x.size:
        if not np.isfinite(x).all():
            raise ValueError(f"x contains {int((~np.isfinite(x)).sum())} non-finite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < bounds[0] or hi > bounds[1]:
            raise ValueError(f"x must lie in [{bounds[0]}, {bounds[1]}]; found min {lo}, "
                             f"max {hi}")
    if y.size and int(y.min()) < 0:
        raise ValueError(f"labels must be non-negative class indices; found min {int(y.min())}")


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
        from .formats import load_idx

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
        source: a name from :func:`registered`, a synthetic spec
            (``"tsipras:d=1000,p=0.95"``, see :func:`.synthetic.tsipras`) or a path to a
            file/folder on disk.
        **kwargs: format options passed to the loader (for example ``x_key``/``y_key`` for npz).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the format is not recognised or the contents are invalid.
    """
    key = str(source).lower()
    if key.split(":", 1)[0] == "tsipras":  # parameterised synthetic set, see .synthetic
        from .synthetic import load_spec

        return load_spec(str(source), **kwargs)
    if key in _REGISTRY and not Path(str(source)).exists():
        return _REGISTRY[key](**kwargs)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"data source {str(source)!r} is neither a registered name ({', '.join(registered())})"
            " nor an existing path")
    from . import formats

    return formats.load_path(path, **kwargs)
