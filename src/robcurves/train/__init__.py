"""Train the models people compare: standard, PGD adversarial training (l_inf, l2, l1),
TRADES, multi-perturbation training (MAX/AVG) and certified training by interval bound
propagation, on the architectures of the robustness literature.

``fit(data, arch, method, ...)`` trains one model and attaches its metadata as
``module.robcurves_meta``; ``save_model`` / ``load_model`` write and read model files.
"""

from __future__ import annotations

from .archs import ARCHS, arch_names, build
from .io import MODEL_FORMAT, MODEL_VERSION, is_model_file, load_model, read_meta, save_model
from .loop import evaluate_model, fit, lr_factor, schedule_at
from .methods import (
    METHODS,
    Schedule,
    ThreatModel,
    combine_losses,
    ibp_logit_bounds,
    make_method,
    method_names,
    parse_threats,
    worst_case_logits,
)

__all__ = [
    "ARCHS", "METHODS", "MODEL_FORMAT", "MODEL_VERSION", "Schedule", "ThreatModel", "arch_names",
    "build", "combine_losses", "evaluate_model", "fit", "ibp_logit_bounds", "is_model_file",
    "load_model", "lr_factor", "make_method", "method_names", "parse_threats", "read_meta",
    "save_model", "schedule_at", "worst_case_logits",
]
