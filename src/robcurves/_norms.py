"""The one place where norms are named, parsed and computed.

A norm has one canonical form in robcurves: the float ``p`` in ``{inf, 2.0, 1.0}``, the value of
every ``.norm`` attribute (:class:`~robcurves.Distances`, :class:`~robcurves.RobustnessCurve`,
:class:`~robcurves.comparison.Comparison`, :class:`~robcurves.train.ThreatModel`,
:class:`~robcurves.diagnostics.Kink`...). Every function taking a norm accepts any
:data:`NormLike` spelling and turns it into that float with :func:`parse_norm`. Names in files,
folders, tables and reprs are spelled ``"linf"``, ``"l2"``, ``"l1"`` (:func:`norm_name`).

Per-point results of a threat model that is not one l_p ball (a union of scaled balls, the
spatial rotation-translation grid, an affine combination of balls) carry a *threat label* in
place of the float: a canonical string such as ``"union(linf:1,l2:0.5)"``,
``"union(linf:0.1,deg:30,px:3)"`` (l_inf and rotation-translation), ``"spatial(deg:30,px:3)"``
or ``"affine(linf:1,l2:0.5)"`` (:func:`parse_threat`, :func:`union_label`,
:func:`spatial_label`, :func:`affine_label`). Two curves are comparable exactly when their
labels are equal; a label is never accepted where an attack needs an l_p norm.
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch

__all__ = ["NormLike", "parse_norm", "norm_name", "dual_norm", "lp_norm", "lp_norm_np",
           "parse_threat", "union_label", "spatial_label", "affine_label", "spatial_units",
           "is_threat_label",
           "file_stem"]

#: Any accepted spelling of a norm: ``math.inf``/``"inf"``/``"linf"``, ``2``/``"l2"``,
#: ``1``/``"l1"`` (strings case-insensitive). Attributes hold the parsed float.
NormLike = float | int | str

_ALIASES = {
    "inf": math.inf, "linf": math.inf, "l_inf": math.inf, "infinity": math.inf,
    "2": 2.0, "l2": 2.0, "1": 1.0, "l1": 1.0,
}


def parse_norm(value: NormLike) -> float:
    """Return ``math.inf``, ``2.0`` or ``1.0`` for the accepted spellings of a norm.

    Accepted: ``"inf"``, ``"linf"``, ``float("inf")``, ``2``, ``"l2"``, ``1``, ``"l1"``
    (case-insensitive). Anything else raises ``ValueError`` naming the value.
    """
    if isinstance(value, bool):
        raise ValueError(f"unknown norm {value!r}; expected one of inf, linf, 2, l2, 1, l1")
    if isinstance(value, (int, float)):
        if value == math.inf or value in (1, 2):
            return float(value)
    elif isinstance(value, str):
        p = _ALIASES.get(value.strip().lower())
        if p is not None:
            return p
    raise ValueError(f"unknown norm {value!r}; expected one of inf, linf, 2, l2, 1, l1")


def norm_name(p: NormLike) -> str:
    """``"linf"``, ``"l2"`` or ``"l1"`` for any spelling of a norm; a threat label (see
    :func:`parse_threat`) is returned in its canonical form."""
    if is_threat_label(p):
        return parse_threat(p)
    return {math.inf: "linf", 2.0: "l2", 1.0: "l1"}[parse_norm(p)]


def dual_norm(p: NormLike) -> float:
    """The q with 1/p + 1/q = 1."""
    p = parse_norm(p)
    return {math.inf: 1.0, 2.0: 2.0, 1.0: math.inf}[p]


def lp_norm(delta: torch.Tensor, p: float) -> torch.Tensor:
    """Per-sample l_p norm of a batch ``(N, ...)``, computed in the tensor's dtype."""
    flat = delta.reshape(delta.shape[0], -1)
    if p == math.inf:
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
    return torch.linalg.vector_norm(flat, ord=p, dim=1)


def lp_norm_np(delta: np.ndarray, p: float) -> np.ndarray:
    """Per-sample l_p norm of a batch ``(N, ...)`` in float64 (the reported distances)."""
    flat = np.asarray(delta, dtype=np.float64).reshape(delta.shape[0], -1)
    if p == math.inf:
        return np.abs(flat).max(axis=1) if flat.shape[1] else np.zeros(flat.shape[0])
    return np.linalg.norm(flat, ord=p, axis=1)


# ---------------------------------------------------------------------------- threat labels
_LABEL = re.compile(r"^\s*(union|spatial|affine)\((.*)\)\s*$", re.IGNORECASE)


def _num(v: float) -> str:
    return f"{float(v):.12g}"


def _scales(scale: dict[float, float], what: str) -> dict[float, float]:
    """Parse the norms of a threat vector and check its scales (positive, finite)."""
    if not scale:
        raise ValueError(f"{what} needs at least one norm in its scale; got none")
    parsed: dict[float, float] = {}
    for k, v in scale.items():
        p = parse_norm(k)
        if p in parsed:
            raise ValueError(f"norm {norm_name(p)} appears twice in the scale")
        try:
            s = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"the scale of {norm_name(p)} must be a number; got {v!r}") from None
        if not (s > 0 and math.isfinite(s)):
            raise ValueError(f"the scale of {norm_name(p)} must be positive and finite; got {v!r}")
        parsed[p] = s
    return parsed


def _parts(parsed: dict[float, float]) -> list[str]:
    return [f"{norm_name(p)}:{_num(parsed[p])}" for p in (math.inf, 2.0, 1.0) if p in parsed]


def union_label(scale: dict[float, float],
                spatial: tuple[float, float] | None = None) -> str:
    """Canonical label of the union of the balls of radius ``t * scale[p]``: norms in the order
    linf, l2, l1, e.g. ``"union(linf:1,l2:0.5)"``. Scales must be positive and finite.

    ``spatial=(deg, px)`` adds the rotation-translation threat whose size ``t`` allows
    rotations up to ``t * deg`` degrees and shifts up to ``t * px`` pixels:
    ``"union(linf:0.1,deg:30,px:3)"`` (``scale`` may then be empty)."""
    if spatial is None:
        return f"union({','.join(_parts(_scales(scale, 'a union')))})"
    spatial_label(*spatial)  # checks deg and px
    parts = _parts(_scales(scale, "a union")) if scale else []
    return f"union({','.join(parts + [f'deg:{_num(spatial[0])}', f'px:{_num(spatial[1])}'])})"


def affine_label(scale: dict[float, float]) -> str:
    """Canonical label of the affine threat ``x + sum_k delta_k`` with ``||delta_k||_{p_k} <=
    lambda_k * t * scale[p_k]`` for some ``lambda`` on the simplex (Tramèr & Boneh), e.g.
    ``"affine(linf:0.1,l1:10)"``. It needs two or more norms: with one, the affine threat is
    that norm's ball and its distance the per-norm distance divided by the scale."""
    parsed = _scales(scale, "an affine threat")
    if len(parsed) < 2:
        raise ValueError(f"an affine threat needs at least two norms in its scale; got "
                         f"{[norm_name(p) for p in parsed]} (with one norm it is that norm's "
                         "ball: use its per-norm distances divided by the scale)")
    return f"affine({','.join(_parts(parsed))})"


def spatial_label(max_degrees: float, max_pixels: float) -> str:
    """Canonical label of the spatial threat with rotations up to ``max_degrees`` and
    translations up to ``max_pixels`` (the units of the distance r = 1)."""
    for name, v in (("max_degrees", max_degrees), ("max_pixels", max_pixels)):
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                and math.isfinite(v)):
            raise ValueError(f"{name} must be a positive finite number; got {v!r}")
    return f"spatial(deg:{_num(max_degrees)},px:{_num(max_pixels)})"


def spatial_units(label: str) -> tuple[float, float]:
    """``(deg, px)`` of a spatial label ``"spatial(deg:30,px:3)"``."""
    canon = parse_threat(label)
    m = re.fullmatch(r"spatial\(deg:([^,]+),px:([^)]+)\)", canon) if isinstance(canon, str) \
        else None
    if m is None:
        raise ValueError(f"expected a spatial threat label such as 'spatial(deg:30,px:3)'; got "
                         f"{label!r}")
    return float(m.group(1)), float(m.group(2))


def is_threat_label(value: object) -> bool:
    """``value`` is a string of the form ``union(...)``, ``spatial(...)`` or ``affine(...)``."""
    return isinstance(value, str) and _LABEL.match(value) is not None


def parse_threat(value: NormLike) -> float | str:
    """An l_p norm (any :data:`NormLike` spelling) as its float, or a threat label in its
    canonical form (``"union(linf:1,l2:0.5)"``, ``"union(linf:0.1,deg:30,px:3)"``,
    ``"spatial(deg:30,px:3)"``, ``"affine(linf:1,l2:0.5)"``)."""
    m = _LABEL.match(value) if isinstance(value, str) else None
    if m is None:
        return parse_norm(value)
    kind, body = m.group(1).lower(), m.group(2)
    items: dict[str, str] = {}
    for part in filter(None, (x.strip() for x in body.split(","))):
        key, sep, v = part.partition(":")
        if not sep:
            raise ValueError(f"threat label {value!r}: expected key:value items; got {part!r}")
        items[key.strip().lower()] = v.strip()

    def number(v: str) -> float:
        try:
            return float(v)
        except ValueError:
            raise ValueError(f"threat label {value!r}: {v!r} is not a number") from None

    if kind == "affine":
        return affine_label({k: number(v) for k, v in items.items()})
    if kind == "union":
        rt = {k: items.pop(k) for k in ("deg", "px") if k in items}
        if rt and len(rt) != 2:
            raise ValueError(f"threat label {value!r}: a spatial part needs both deg:... and "
                             "px:...")
        return union_label({k: number(v) for k, v in items.items()},
                           (number(rt["deg"]), number(rt["px"])) if rt else None)
    if set(items) != {"deg", "px"}:
        raise ValueError(f"threat label {value!r}: spatial needs exactly deg:... and px:...")
    return spatial_label(number(items["deg"]), number(items["px"]))


def file_stem(name: str) -> str:
    """A norm name or threat label as a safe file-name part: ``"linf"`` stays ``"linf"``,
    ``"union(linf:1,l2:0.5)"`` becomes ``"union_linf_1_l2_0.5"``."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", name).strip("_")
