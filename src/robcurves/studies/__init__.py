"""Studies: one module per classic question about robustness, each built on the same stages
(training, distances, curves) and returning plain results, with a ``robcurves study NAME``
command and one page.

- :mod:`robcurves.studies.scaling`: scaling laws of robustness in model size N and data size D
  (Bartoldson et al., ICML 2024), for the robust loss and for the whole robustness curve.
- :mod:`robcurves.studies.tradeoff`: the accuracy/robustness trade-off of Tsipras et al. (ICLR
  2019) on their distribution, with exact population curves and Theorem 2.1.
"""

from __future__ import annotations

__all__ = ["scaling", "tradeoff"]
