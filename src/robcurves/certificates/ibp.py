"""Interval bound propagation (IBP).

:func:`ibp_bounds` pushes an input box through a ``nn.Sequential`` and returns elementwise
bounds on the outputs, differentiable with respect to the module's parameters (so it serves as
a certified-training loss). Affine layers use the centre/radius form
(``mid' = W mid + b``, ``rad' = |W| rad``), which is exact for one affine layer on a box.
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import Affine, ReLU, Step, sequential_layers

__all__ = ["ibp_bounds", "ibp_steps"]


def ibp_steps(steps: list[Step], lower: torch.Tensor, upper: torch.Tensor,
              keep: bool = False) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Propagate ``[lower, upper]`` through flattened steps.

    Returns the output bounds and, with ``keep=True``, the ``(lower, upper)`` bounds of every
    ReLU's input in order (for CROWN and the MILP's big-M constants); else an empty list.
    """
    lo, hi = lower, upper
    pre: list[tuple[torch.Tensor, torch.Tensor]] = []
    for step in steps:
        if isinstance(step, ReLU):
            if keep:
                pre.append((lo, hi))
            lo, hi = torch.relu(lo), torch.relu(hi)
        elif isinstance(step, Affine):
            mid, rad = (hi + lo) / 2, (hi - lo) / 2
            mid, rad = step.forward(mid), step.abs_linear(rad)
            lo, hi = mid - rad, mid + rad
        else:  # pragma: no cover - sequential_layers only builds these two
            raise TypeError(f"unknown step {step!r}")
    return lo, hi, pre


def ibp_bounds(module: nn.Module, lower: torch.Tensor, upper: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise bounds on ``module(x)`` for every ``x`` in the box ``[lower, upper]``.

    Args:
        module: ``nn.Sequential`` (nested Sequentials are flattened) of ``Linear``, ``Conv2d``,
            ``ReLU``, ``Flatten``, ``BatchNorm1d/2d`` (eval mode), ``AvgPool2d``, ``Identity``,
            ``Dropout`` (eval mode) and :class:`robcurves.certificates.Normalize`. Any other layer
            raises ``ValueError`` naming it and its position.
        lower, upper: batched boxes ``(N, *input_shape)`` with ``lower <= upper``, in the
            module's input space (apply any preprocessing inside the module, e.g. with
            ``Normalize``, so the box is in raw input space).

    Returns:
        ``(out_lower, out_upper)``, each ``(N, *output_shape)``; differentiable with respect to
        the module's parameters (and to ``lower``/``upper``).
    """
    if lower.shape != upper.shape:
        raise ValueError(f"lower and upper must have the same shape; got {tuple(lower.shape)} "
                         f"and {tuple(upper.shape)}")
    if lower.ndim < 2:
        raise ValueError(f"lower/upper must be batched (N, *input_shape); got shape "
                         f"{tuple(lower.shape)}")
    if (lower > upper).any():
        raise ValueError(f"lower must be <= upper; found lower - upper up to "
                         f"{float((lower - upper).max())}")
    steps = sequential_layers(module, lower.shape[1:], like=lower)
    lo, hi, _ = ibp_steps(steps, lower, upper)
    return lo, hi
