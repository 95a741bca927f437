"""The :class:`Dataset` every loader returns, and the checks it applies."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Dataset", "check_dataset"]


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
