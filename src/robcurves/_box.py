"""Geometry of the input box ``[lo, hi]^D`` shared by attacks and certificates (either bound may
be infinite: an unbounded input space, where the box never binds)."""

from __future__ import annotations

import math

__all__ = ["max_radius"]


def max_radius(n_inputs: int, p: float, bounds: tuple[float, float]) -> float:
    """The largest l_p distance between two points of the box ``bounds`` in ``n_inputs``
    dimensions: an l_p ball of this radius around any box point covers the whole box, so no
    search needs to go beyond it (``inf`` for an unbounded box)."""
    width = bounds[1] - bounds[0]
    return width if p == math.inf else width * n_inputs ** (1.0 / p)
