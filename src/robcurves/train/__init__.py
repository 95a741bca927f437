"""Train the models people compare: standard, PGD adversarial training (l_inf, l2, l1),
TRADES, multi-perturbation training (MAX/AVG), certified training by interval bound
propagation and by Wong & Kolter's dual network, and the maximum-margin regularisers MMR+AT and
MMR-Universal, on the architectures of the robustness literature.

``fit(data, arch, method, ...)`` trains one model and attaches its metadata as
``module.robcurves_meta``; ``save_model`` / ``load_model`` write and read model files;
``load_checkpoint`` reads a plain state dict (e.g. a RobustBench checkpoint) into an
architecture;
``train_zoo`` trains the standard zoo (``ZOO``) used by benchmarks and reports.
"""

from __future__ import annotations

from .archs import ARCHS, WideResNet, arch_names, build, resolve_arch, wide_resnet
from .io import (
    MODEL_FORMAT,
    MODEL_VERSION,
    is_model_file,
    load_checkpoint,
    load_model,
    read_meta,
    save_model,
)
from .loop import CHECKPOINT_FORMAT, evaluate_model, fit, lr_factor, schedule_at
from .methods import (
    KW,
    METHODS,
    MMR,
    Method,
    Schedule,
    ThreatModel,
    combine_losses,
    ibp_logit_bounds,
    make_method,
    method_names,
    parse_threats,
    worst_case_logits,
)
from .zoo import DEFAULT_TRAIN_POINTS, ZOO, ZOO_THREATS, train_zoo, zoo_path

__all__ = [
    "ARCHS", "CHECKPOINT_FORMAT", "DEFAULT_TRAIN_POINTS", "KW", "METHODS", "MMR", "MODEL_FORMAT",
    "MODEL_VERSION", "Method", "Schedule", "ThreatModel", "WideResNet", "ZOO", "ZOO_THREATS",
    "arch_names",
    "build", "combine_losses", "evaluate_model", "fit", "ibp_logit_bounds", "is_model_file",
    "load_checkpoint", "load_model", "lr_factor", "make_method", "method_names",
    "parse_threats", "read_meta", "resolve_arch",
    "save_model", "schedule_at", "train_zoo", "wide_resnet", "worst_case_logits",
    "zoo_path",
]
