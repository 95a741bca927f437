"""Data sets by name: :func:`register` a loader, :func:`load` a name or a path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .dataset import Dataset

__all__ = ["load", "register", "registered", "data_dirs"]


_REGISTRY: dict[str, Callable[..., Dataset]] = {}


def register(name: str, loader: Callable[..., Dataset]) -> None:
    """Register ``loader`` (a callable returning a :class:`Dataset`) under ``name``.

    Its keyword arguments are the data set's parameters: ``load("name:k=v,k2=v2")`` calls
    ``loader(k=v, k2=v2)`` (values parsed as int, float, true/false, else text), so a new named
    data set only needs a function with keyword arguments.
    """
    _REGISTRY[name.lower()] = loader


def registered() -> list[str]:
    """Names that :func:`load` accepts besides paths."""
    return sorted(_REGISTRY)


def _digits(split: str | None = None, seed: int = 0, fraction: float = 0.2) -> Dataset:
    """scikit-learn's 1,797 8x8 digits; ``split="train"|"test"`` takes a part of the seeded
    hold-out rule (:mod:`robcurves.data.splits`: 20% held out with seed 0 by default)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]  # (1797, 1, 8, 8), values 0..16
    ds = Dataset(x=x, y=d.target.astype(np.int64), name="digits",
                 classes=tuple(str(c) for c in range(10)), source="sklearn.datasets.load_digits",
                 info={"levels": 17})
    if split is None:
        return ds
    from .splits import holdout

    return holdout(ds, split, seed=seed, fraction=fraction)


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


def _tsipras(**params) -> Dataset:
    from .synthetic import load_spec

    spec = "tsipras:" + ",".join(f"{k}={v}" for k, v in params.items() if k != "split")
    return load_spec(spec, **({"split": params["split"]} if "split" in params else {}))


register("tsipras", _tsipras)  # "tsipras:d=1000,p=0.95": see robcurves.data.synthetic


def _value(text: str) -> object:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def split_spec(spec: str) -> tuple[str, dict]:
    """``"name:k=v,k2=v2"`` -> ``("name", {"k": v, "k2": v2})`` for a registered name (values
    read as int, float, true/false or text); a plain name or path has no parameters.

    Raises:
        ValueError: a parameter without a value or one given twice, naming it.
    """
    name, sep, rest = spec.partition(":")
    name = name.strip().lower()
    params: dict = {}
    if sep and name in _REGISTRY:
        for item in (i.strip() for i in rest.split(",")):
            if not item:
                continue
            k, eq, v = (t.strip() for t in item.partition("="))
            if not eq or not k:
                raise ValueError(f"data set parameter {item!r} in {spec!r} needs a value: "
                                 "parameters are KEY=VALUE pairs separated by commas, as in "
                                 "'digits:split=test'")
            if k in params:
                raise ValueError(f"data set parameter {k!r} given twice in {spec!r}")
            params[k] = _value(v)
    return name, params


def load(source: str | Path, **kwargs) -> Dataset:
    """Load a data set by registered name (with parameters) or from a path.

    Args:
        source: a name from :func:`registered`, optionally with parameters
            (``"digits:split=test"``), or a path to a file/folder on disk.
        **kwargs: format options passed to the loader (for example ``x_key``/``y_key`` for npz).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the format is not recognised or the contents are invalid.
    """
    if not Path(str(source)).expanduser().exists():
        name, params = split_spec(str(source))
        if name in _REGISTRY:
            return _REGISTRY[name](**{**params, **kwargs})
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"data source {str(source)!r} is neither a registered name ({', '.join(registered())})"
            " nor an existing path")
    from .formats import load_path

    return load_path(path, **kwargs)
