"""Studies: one module per classic question about robustness, each built on the same stages
(training, distances, curves) and returning plain results, with a ``robcurves study NAME``
command and one page.

- :mod:`robcurves.studies.scaling`: scaling laws of robustness in model size N and data size D
  (Bartoldson et al., ICML 2024), for the robust loss and for the whole robustness curve.
- :mod:`robcurves.studies.tradeoff`: the accuracy/robustness trade-off of Tsipras et al. (ICLR
  2019) on their distribution, with exact population curves and Theorem 2.1.
- :mod:`robcurves.studies.paper`: the theory of Risse, Göpfert & Göpfert ("How to compare
  adversarial robustness of classifiers from a global perspective"): Theorem 1, Example 1 and
  Theorem 2 as constructions with exact curves, predicted next to found crossings and scales.
- :mod:`robcurves.studies.multi`: robustness against several perturbation types at once
  (Tramèr & Boneh, NeurIPS 2019): ST, AT and MAX/AVG models, union, spatial and affine curves,
  the gradient-masking check and the paper's table.
- :mod:`robcurves.studies.human`: human validity of adversarial examples: from labels people
  gave (``robcurves label``), the human-validated curve (Bartoldson et al., 2024).
"""

from __future__ import annotations

__all__ = ["human", "multi", "paper", "scaling", "tradeoff"]
