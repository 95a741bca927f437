"""Certified lower bounds on minimal adversarial distances.

- :func:`ibp_bounds`: interval bounds on a ``nn.Sequential``'s outputs over an input box
  (differentiable; usable as a certified-training loss).
- :class:`Normalize`: an explicit ``(x - mean) / std`` layer the certifiers understand.
"""

from __future__ import annotations

from ._layers import SUPPORTED_LAYERS, Normalize
from .ibp import ibp_bounds

__all__ = ["SUPPORTED_LAYERS", "Normalize", "ibp_bounds"]
