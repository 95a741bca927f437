"""Synthetic data sets with known population behaviour.

``tsipras``: the distribution of Tsipras, Santurkar, Engstrom, Turner & Madry, "Robustness may
be at odds with accuracy" (ICLR 2019), Section 2.1::

    y  ~ uniform {-1, +1}                      (stored as classes 0 = "-1", 1 = "+1")
    x_1 = +y with probability p, else -y       (one robust feature, moderately predictive)
    x_2 .. x_{d+1} ~ N(eta * y, 1) i.i.d.      (d weakly predictive, non-robust features)

so inputs have ``d + 1`` features and are unbounded (``Dataset.bounds == (-inf, inf)``).
Defaults: the paper's ``d = 1000``, ``p = 0.95``, ``eta = 3 / sqrt(d)``; ``n = 10000`` points,
``seed = 0``. By name: ``robcurves.data.load("tsipras:d=1000,p=0.95,n=10000,seed=0")``; every
parameter is optional (``"tsipras"`` alone gives the defaults).

Exact population robustness curves of linear classifiers on it are in
:mod:`robcurves.population`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .dataset import Dataset

__all__ = ["TSIPRAS_DEFAULTS", "TsiprasParams", "tsipras", "parse_spec", "load_spec"]

#: The paper's parameters (eta = None means 3 / sqrt(d)) and the default sample.
TSIPRAS_DEFAULTS: dict[str, float | int | None] = {
    "d": 1000, "p": 0.95, "eta": None, "n": 10000, "seed": 0}


@dataclass(frozen=True)
class TsiprasParams:
    """Validated parameters of the distribution (not of a sample).

    Attributes:
        d: number of Gaussian (non-robust) features; inputs have ``d + 1`` features.
        p: probability that the robust feature x_1 equals the label, in (0.5, 1).
        eta: mean of the Gaussian features times y, > 0 (default ``3 / sqrt(d)``).
    """

    d: int = 1000
    p: float = 0.95
    eta: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.d, bool) or not isinstance(self.d, (int, np.integer)) or self.d < 1:
            raise ValueError(f"tsipras: d must be an integer >= 1; got {self.d!r}")
        if not (isinstance(self.p, (int, float)) and 0.5 < float(self.p) < 1.0):
            raise ValueError(f"tsipras: p must lie strictly between 0.5 and 1; got {self.p!r}")
        eta = 3.0 / math.sqrt(self.d) if self.eta is None else self.eta
        if not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta > 0):
            raise ValueError(f"tsipras: eta must be a finite number > 0; got {self.eta!r}")
        object.__setattr__(self, "d", int(self.d))
        object.__setattr__(self, "p", float(self.p))
        object.__setattr__(self, "eta", float(eta))

    @property
    def dim(self) -> int:
        """Input dimension ``d + 1``."""
        return self.d + 1

    def spec(self) -> str:
        """The name that :func:`load_spec` reads back (without n and seed)."""
        return f"tsipras:d={self.d},p={self.p:g},eta={self.eta:.10g}"


def tsipras(d: int = 1000, p: float = 0.95, n: int = 10000, eta: float | None = None,
            seed: int = 0) -> Dataset:
    """``n`` points of the Tsipras et al. distribution (see the module docstring).

    Args:
        d: Gaussian features (inputs have ``d + 1`` features); >= 1.
        p: P[x_1 = y], in (0.5, 1).
        n: number of points, >= 1.
        eta: mean shift of the Gaussian features, > 0; default ``3 / sqrt(d)``.
        seed: seed of numpy's PCG64 generator; the same arguments give the same points.

    Returns:
        A :class:`Dataset` of float32 inputs ``(n, d + 1)``, labels 0 (y = -1) / 1 (y = +1),
        ``bounds == (-inf, inf)`` and the parameters in ``info``.

    Raises:
        ValueError: naming the bad parameter.
    """
    prm = TsiprasParams(d=d, p=p, eta=eta)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"tsipras: n must be an integer >= 1; got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"tsipras: seed must be an integer; got {seed!r}")
    rng = np.random.default_rng(int(seed))
    ys = rng.integers(0, 2, size=int(n)) * 2 - 1                     # y in {-1, +1}
    agree = rng.random(int(n)) < prm.p
    x1 = np.where(agree, ys, -ys).astype(np.float64)
    gauss = rng.standard_normal((int(n), prm.d)) + prm.eta * ys[:, None]
    x = np.concatenate([x1[:, None], gauss], axis=1).astype(np.float32)
    name = f"tsipras-d{prm.d}"
    return Dataset(x=x, y=((ys + 1) // 2).astype(np.int64), name=name, classes=("-1", "+1"),
                   source=f"{prm.spec()},n={int(n)},seed={int(seed)}",
                   info={"d": prm.d, "p": prm.p, "eta": prm.eta, "seed": int(seed)},
                   bounds=(-math.inf, math.inf))


_INT_KEYS = {"d", "n", "seed"}


def parse_spec(spec: str) -> dict[str, float | int]:
    """``"tsipras:d=100,p=0.9"`` -> ``{"d": 100, "p": 0.9}`` (only the keys given).

    Raises:
        ValueError: not a tsipras spec, an unknown key, a repeated key or a value that is
            not a number.
    """
    from .registry import split_spec

    head, params = split_spec(str(spec))
    if head != "tsipras":
        raise ValueError(f"not a tsipras spec: {spec!r}; expected 'tsipras:d=1000,p=0.95,...'")
    out: dict[str, float | int] = {}
    for key, value in params.items():
        key = key.lower()
        if key not in TSIPRAS_DEFAULTS:
            raise ValueError(f"tsipras: unknown parameter {key!r} in {spec!r}; expected "
                             f"{', '.join(TSIPRAS_DEFAULTS)}")
        want_int = key in _INT_KEYS
        ok = (isinstance(value, int) if want_int else isinstance(value, (int, float))) \
            and not isinstance(value, bool)
        if not ok:
            kind = "an integer" if want_int else "a number"
            raise ValueError(f"tsipras: {key} must be {kind}; got {value!r}")
        out[key] = int(value) if want_int else float(value)
    return out


def load_spec(spec: str, **kwargs) -> Dataset:
    """The data set named by ``spec`` (:func:`parse_spec`); keyword arguments override it.
    A ``split`` keyword (what CLI commands pass for folders) is refused: draw a held-out set
    with another ``seed``."""
    if "split" in kwargs:
        raise ValueError(f"tsipras has no splits (got split={kwargs['split']!r}); draw "
                         "held-out points with another seed, e.g. 'tsipras:seed=1'")
    params = {**parse_spec(spec), **kwargs}
    unknown = set(params) - set(TSIPRAS_DEFAULTS)
    if unknown:
        raise ValueError(f"tsipras: unknown parameter(s) {sorted(unknown)}; expected "
                         f"{', '.join(TSIPRAS_DEFAULTS)}")
    return tsipras(**params)
