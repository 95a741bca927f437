"""Data sets as float32 arrays in [0, 1] with integer labels.

``load(source)`` accepts a registered name (``"digits"``, ...) or a path on disk. Every loader
returns a :class:`Dataset`; images are laid out channels-first, ``(N, C, H, W)``, feature
vectors as ``(N, D)``.
"""

from __future__ import annotations

from .dataset import Dataset, check_dataset
from .registry import data_dirs, load, register, registered

__all__ = ["Dataset", "load", "register", "registered", "check_dataset", "data_dirs"]
