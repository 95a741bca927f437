"""``fit``: train one model by name, with schedules, checkpoints and a final evaluation.

Everything a run depends on is in its *config* (a JSON-able dict); a checkpoint is only resumed
when its config matches, so a resumed run gives the same weights as an uninterrupted one on CPU.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import data as rdata
from .._device import resolve_device
from .._norms import NormLike
from ..attacks._pgd import pgd
from ..model import wrap
from .archs import build
from .methods import Method, Schedule, ThreatModel, ibp_logit_bounds, make_method, parse_threats

__all__ = ["fit", "evaluate_model", "lr_factor", "schedule_at", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "robcurves-checkpoint"
_CHECKPOINT_VERSION = 1
_LR_SCHEDULES = ("constant", "cosine", "step", "triangle")
_DEFAULT_LR = {"adam": 1e-3, "sgd": 0.1}


def lr_factor(schedule: str, t: float) -> float:
    """Multiplier of the base learning rate at training progress ``t`` in [0, 1].

    ``constant``: 1. ``cosine``: half a cosine from 1 to 0. ``step``: 1, then 0.1 from 50% and
    0.01 from 75%. ``triangle``: linear 0 -> 1 over the first 40%, back to 0 at the end (the
    cyclic schedule of fast adversarial training).
    """
    t = min(max(float(t), 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "step":
        return 1.0 if t < 0.5 else (0.1 if t < 0.75 else 0.01)
    if schedule == "triangle":
        return t / 0.4 if t < 0.4 else max(0.0, (1 - t) / 0.6)
    raise ValueError(f"lr_schedule must be one of {', '.join(_LR_SCHEDULES)}; got {schedule!r}")


def schedule_at(epoch_float: float, warmup_start: float, warmup: float,
                kappa_start: float = 1.0, kappa_end: float = 0.5) -> Schedule:
    """Eps scale and kappa at a fractional epoch: eps is 0 before ``warmup_start``, grows
    linearly to full over the next ``warmup`` epochs; kappa moves from ``kappa_start`` to
    ``kappa_end`` along with it."""
    if warmup <= 0:
        s = 1.0 if epoch_float >= warmup_start else 0.0
    else:
        s = min(max((epoch_float - warmup_start) / warmup, 0.0), 1.0)
    return Schedule(eps_scale=s, kappa=kappa_start + (kappa_end - kappa_start) * s)


def _as_dataset(data: object) -> rdata.Dataset:
    if isinstance(data, rdata.Dataset):
        return data
    if isinstance(data, (str, Path)):
        return rdata.load(data)
    raise TypeError(f"data must be a robcurves Dataset, a registered name or a path; got "
                    f"{type(data).__name__}")


def _device(device: str | None) -> torch.device:
    """The training device: ``None`` and ``"auto"`` are CUDA when available, else the CPU (a
    freshly built network has no device of its own to keep); a device this machine lacks is
    refused."""
    return resolve_device("auto" if device is None else device)


@torch.no_grad()
def _accuracy(module: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    if x.shape[0] == 0:
        return float("nan")
    correct = 0
    for i in range(0, x.shape[0], batch):
        correct += int((module(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / x.shape[0]


def evaluate_model(module: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   threats: list[ThreatModel], steps: int = 20, restarts: int = 1,
                   certify: bool = False, batch: int = 256, seed: int = 0) -> dict:
    """Clean accuracy and PGD accuracy (margin loss, ``steps`` steps, ``restarts`` random
    starts on top of a start at ``x``; a point counts as robust only if no run breaks it) for
    each threat model, and with ``certify`` the IBP-certified l_inf accuracy. Inputs are raw,
    in [0, 1]; the module is evaluated in eval mode on its own device.
    """
    module.eval()
    dev = next(module.parameters()).device
    x, y = x.to(dev), y.to(dev)
    clf = wrap(module, device=str(dev), batch_size=batch)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    out: dict = {"clean_accuracy": _accuracy(module, x, y), "n": int(x.shape[0]),
                 "pgd_steps": int(steps), "pgd_restarts": int(restarts), "pgd_accuracy": {},
                 "ibp_certified_accuracy": {}}
    for tm in threats:
        robust = 0
        for i in range(0, x.shape[0], batch):
            xb, yb = x[i:i + batch], y[i:i + batch]
            with torch.no_grad():
                ok = module(xb).argmax(1) == yb
            for r in range(restarts + 1):
                if not ok.any():
                    break
                xa = pgd(clf, xb, yb, tm.p, eps=tm.eps, steps=steps, step_size=2.5,
                         loss="margin", random_init=r > 0, seed=gen, sparsity=tm.sparsity)
                with torch.no_grad():
                    ok &= module(xa).argmax(1) == yb
            robust += int(ok.sum())
        out["pgd_accuracy"][tm.label] = robust / max(1, x.shape[0])
        if certify and tm.norm == math.inf:
            cert = 0
            for i in range(0, x.shape[0], batch):
                xb, yb = x[i:i + batch], y[i:i + batch]
                with torch.no_grad():
                    _, hi = ibp_logit_bounds(module, (xb - tm.eps).clamp(0, 1),
                                             (xb + tm.eps).clamp(0, 1), yb)
                    hi = hi.masked_fill(F.one_hot(yb, hi.shape[1]).bool(), -math.inf)
                    cert += int((hi.amax(1) < 0).sum())
            out["ibp_certified_accuracy"][tm.label] = cert / max(1, x.shape[0])
    if not out["ibp_certified_accuracy"]:
        out.pop("ibp_certified_accuracy")
    return out


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, config: dict) -> dict | None:
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(f"checkpoint {str(path)!r} is unreadable ({exc}); delete it to start "
                         "over") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a robcurves training checkpoint")
    if state.get("version") != _CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {str(path)!r} has version {state.get('version')!r}; this "
                         f"robcurves writes version {_CHECKPOINT_VERSION}")
    old = json.loads(state["config"])
    if old != config:
        diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        raise ValueError(f"checkpoint {str(path)!r} belongs to a different run (differs in "
                         f"{', '.join(diff)}); delete it or use another checkpoint path")
    return state


def fit(data: object, arch: str = "cnn-small", method: str = "standard", *,
        norm: NormLike = "inf", eps: float = 0.1, steps: int = 10, step_size: float = 2.5,
        threats: object = None, epochs: int = 10, batch_size: int = 64, lr: float | None = None,
        optimizer: str = "adam", weight_decay: float = 0.0, lr_schedule: str = "cosine",
        warmup: float | None = None, warmup_start: float | None = None, kappa: float | None = None,
        arch_kwargs: dict | None = None, eval_data: object = None, eval_points: int = 1000,
        eval_steps: int = 20, seed: int = 0, device: str | None = None, progress: bool = True,
        checkpoint: str | Path | None = None, **kwargs) -> nn.Module:
    """Train ``arch`` on ``data`` with ``method`` and return the module (eval mode) with its
    metadata in ``module.robcurves_meta``.

    Args:
        data: a :class:`robcurves.data.Dataset` or anything :func:`robcurves.data.load` takes.
        arch: ``cnn-small``, ``mlp``, ``cnn-wide``, ``preact-resnet18`` or ``wrn-16-k``.
        method: ``standard``, ``pgd-at``, ``trades``, ``multi-avg``, ``multi-max``, ``ibp``,
            ``kw``, ``mmr-at`` or ``mmr-universal`` (:mod:`robcurves.train.methods`).
        norm, eps, steps, step_size: the threat model (training attack for pgd-at/trades/ibp;
            the evaluation threat model for ``standard``). ``step_size`` is a multiple of
            ``eps / steps``.
        threats: for ``multi-*``: ``"linf:0.1,l2:1.5,l1:10"`` or a list of dicts (defaults for
            ``steps`` and ``step_size`` from the arguments above).
        epochs, batch_size, lr, optimizer (``adam``/``sgd``), weight_decay, lr_schedule
            (``constant``, ``cosine``, ``step``, ``triangle``; applied per batch).
        warmup: epochs over which eps grows linearly from 0 to ``eps`` (default 0 for attacks,
            half the epochs for ``ibp``, ``min(20, epochs / 2)`` for ``kw``, whose radius
            starts at ``eps_start``), starting at epoch ``warmup_start`` (default 0 for
            attacks and ``kw``, a tenth of the epochs of clean training first for ``ibp``).
        kappa: final weight of the clean loss for ``ibp`` (default 0.5; starts at 1).
        arch_kwargs: the architecture's options (``{"width": 256}`` for ``mlp``...).
        eval_data: data for the final evaluation (a Dataset or a source); default: the first
            ``eval_points`` training points (recorded as ``eval_on: "train"``).
        eval_points: points for the final PGD evaluation (clean accuracy uses all of
            ``eval_data``).
        eval_steps: PGD steps of the final evaluation (margin loss, one random restart).
        seed: seeds initialisation, shuffling and attacks (deterministic on CPU).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; default (``None``) as
            ``"auto"``: CUDA when available, else the CPU (a device this machine lacks is
            refused, naming the devices it has).
        progress: show a tqdm bar with loss and accuracy.
        checkpoint: file written after every epoch; an existing one of the same run is
            resumed (a different run's raises ``ValueError``).
        **kwargs: method options: ``beta`` (trades), ``clean_mix`` (pgd-at), ``eps_start``
            and ``intermediate`` (kw), ``lam``, ``gamma_b``, ``gamma_d``, ``kb_start``,
            ``kb_end``, ``k_d``, ``ramp_epochs``, ``ae_frac`` (mmr-at), ``gamma_l1``,
            ``gamma_linf``, ``lambda_l1``, ``lambda_linf`` (mmr-universal); see
            :class:`robcurves.train.methods.KW` and :class:`~robcurves.train.methods.MMR`.

    Raises:
        ValueError: unknown architecture/method/option, bad numbers, mismatching checkpoint.
    """
    ds = _as_dataset(data)
    if ds.n == 0:
        raise ValueError("cannot train on an empty data set")
    if int(epochs) < 1 or int(batch_size) < 1:
        raise ValueError(f"epochs and batch_size must be >= 1; got {epochs}, {batch_size}")
    if optimizer not in _DEFAULT_LR:
        raise ValueError(f"optimizer must be 'adam' or 'sgd'; got {optimizer!r}")
    lr_factor(lr_schedule, 0.0)  # validates the name
    lr = float(_DEFAULT_LR[optimizer] if lr is None else lr)
    arch_kwargs = dict(arch_kwargs or {})
    dev = _device(device)

    if method.startswith("multi-"):
        tms = parse_threats(threats, steps, step_size)
        if not tms:
            raise ValueError(f"method {method!r} needs threats, e.g. threats='linf:0.1,l2:1.5'")
    else:
        if threats is not None:
            raise ValueError(f"threats is only for multi-avg/multi-max; method {method!r} uses "
                             "norm and eps")
        tms = [ThreatModel(norm, eps, steps, step_size, kwargs.pop("sparsity", 0.99))]
    certified = method in ("ibp",)
    if warmup is None:  # kw: Wong et al.'s eps schedule over 20 epochs (half of short runs)
        warmup = epochs / 2 if certified else min(20.0, epochs / 2) if method == "kw" else 0.0
    if warmup_start is None:
        warmup_start = epochs / 10 if certified else 0.0
    kappa_end = 0.5 if kappa is None else float(kappa)
    options = dict(kwargs)
    if certified:
        options["kappa"] = kappa_end
    # Validate the method and its options before any work.
    make_method(method, tms, None, **options)

    input_shape, num_classes = ds.input_shape, ds.num_classes
    config = {
        "arch": arch, "arch_kwargs": arch_kwargs, "input_shape": list(input_shape),
        "num_classes": num_classes, "data": ds.name, "data_source": str(ds.source),
        "data_n": ds.n, "method": method, "method_options": options,
        "threats": [t.as_dict() for t in tms], "epochs": int(epochs),
        "batch_size": int(batch_size), "lr": lr, "optimizer": optimizer,
        "weight_decay": float(weight_decay), "lr_schedule": lr_schedule,
        "warmup": float(warmup), "warmup_start": float(warmup_start), "seed": int(seed),
    }

    torch.manual_seed(seed)
    module = build(arch, input_shape, num_classes, **arch_kwargs).to(dev)
    params = module.parameters()
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay,
                              nesterov=True)
    gen_shuffle = torch.Generator().manual_seed(seed)
    gen_attack = torch.Generator(device=dev)
    gen_attack.manual_seed(seed + 1)
    meth: Method = make_method(method, tms, gen_attack, **options)
    clf = wrap(module, device=str(dev), batch_size=max(int(batch_size), 256))

    x_all = torch.from_numpy(np.ascontiguousarray(ds.x))
    y_all = torch.from_numpy(np.ascontiguousarray(ds.y)).long()
    n = ds.n
    n_batches = math.ceil(n / batch_size)
    total = epochs * n_batches

    start_epoch, history, seconds = 0, [], 0.0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None:
        state = _load_checkpoint(ckpt, config)
        if state is not None:
            module.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            gen_shuffle.set_state(state["gen_shuffle"])
            gen_attack.set_state(state["gen_attack"])
            start_epoch = int(state["epoch"])
            history = json.loads(state["history"])
            seconds = float(state["train_seconds"])

    # standard training attacks nothing: its bar shows no eps; others show the warm-up's
    warming = method != "standard" and warmup > 0
    bar = None
    if progress and start_epoch < epochs:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=start_epoch * n_batches, desc=f"{method} {arch}",
                   unit="batch", dynamic_ncols=True)
    try:
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            module.train()
            perm = torch.randperm(n, generator=gen_shuffle)
            tot_loss, tot_correct, tot_n = 0.0, 0, 0
            sched = Schedule()
            for b in range(n_batches):
                idx = perm[b * batch_size:(b + 1) * batch_size]
                xb, yb = x_all[idx].to(dev), y_all[idx].to(dev)
                step = epoch * n_batches + b
                for g in opt.param_groups:
                    g["lr"] = lr * lr_factor(lr_schedule, step / total)
                sched = replace(schedule_at(epoch + b / n_batches, warmup_start, warmup,
                                            kappa_end=kappa_end),
                                epoch=epoch + b / n_batches, epochs=int(epochs))
                loss, z = meth.loss(module, clf, xb, yb, sched)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                module.train()
                tot_loss += float(loss.detach()) * len(idx)
                tot_correct += int((z.detach().argmax(1) == yb).sum())
                tot_n += len(idx)
                if bar is not None:
                    bar.update(1)
                    shown = {"epoch": f"{epoch + 1}/{epochs}", "loss": f"{tot_loss / tot_n:.3f}",
                             "acc": f"{tot_correct / tot_n:.3f}"}
                    if warming:  # the fraction of eps reached in the warm-up
                        shown["eps_warmup"] = f"{sched.eps_scale:.2f}"
                    bar.set_postfix(shown, refresh=False)
            seconds += time.perf_counter() - t0
            history.append({"epoch": epoch + 1, "loss": tot_loss / tot_n,
                            "train_accuracy": tot_correct / tot_n,
                            "eps_scale": sched.eps_scale, "seconds": seconds})
            if ckpt is not None:
                _save_checkpoint(ckpt, {
                    "format": CHECKPOINT_FORMAT, "version": _CHECKPOINT_VERSION,
                    "config": json.dumps(config, sort_keys=True), "epoch": epoch + 1,
                    "model": module.state_dict(), "optimizer": opt.state_dict(),
                    "torch_rng": torch.get_rng_state(), "gen_shuffle": gen_shuffle.get_state(),
                    "gen_attack": gen_attack.get_state().cpu(), "history": json.dumps(history),
                    "train_seconds": seconds})
    finally:
        if bar is not None:
            bar.close()

    # Final evaluation at the training threat model(s).
    if eval_data is None:
        ev, eval_on = ds.subset(slice(0, min(ds.n, int(eval_points)))), "train"
    else:
        ev = _as_dataset(eval_data)
        eval_on = ev.name
        if ev.input_shape != tuple(input_shape):
            raise ValueError(f"eval_data has input shape {ev.input_shape}; the training data "
                             f"has {tuple(input_shape)}")
    x_ev = torch.from_numpy(np.ascontiguousarray(ev.x))
    y_ev = torch.from_numpy(np.ascontiguousarray(ev.y)).long()
    module.eval()
    clean_all = _accuracy(module, x_ev.to(dev), y_ev.to(dev))
    k = min(int(eval_points), ev.n)
    res = evaluate_model(module, x_ev[:k], y_ev[:k], tms, steps=eval_steps,
                         certify=certified, seed=seed)

    first = tms[0]
    trained = method != "standard"
    by_norm: dict[str, float] = {}
    for t in tms:
        by_norm[t.norm_name] = max(by_norm.get(t.norm_name, 0.0), t.eps)
    from .. import __version__
    from ..data.splits import split_record

    meta = {
        **{k2: v for k2, v in config.items()},
        "input_shape": list(input_shape),
        "classes": list(ds.classes) if ds.classes is not None else None,
        "threat_model": first.as_dict(),
        "train_norm": first.norm_name if trained else None,
        "train_eps": first.eps if trained else None,
        "train_eps_by_norm": by_norm if trained else {},
        "clean_accuracy": clean_all,
        "eval_on": eval_on, "eval_n": ev.n, "eval_pgd_n": k,
        "pgd_accuracy": res["pgd_accuracy"],
        "robust_accuracy": res["pgd_accuracy"][first.label],
        "eval_pgd_steps": int(eval_steps), "eval_pgd_restarts": res["pgd_restarts"],
        "train_seconds": seconds, "history": history, "device": str(dev),
        "bounds": [0.0, 1.0], "preprocessing": None,
        "train_data": split_record(ds),
        "robcurves_version": __version__, "torch_version": torch.__version__,
    }
    if "ibp_certified_accuracy" in res:
        meta["ibp_certified_accuracy"] = res["ibp_certified_accuracy"]
    if hasattr(meth, "certified_accuracy"):  # kw: certified by its own dual network
        meta["kw_certified_accuracy"] = {first.label: meth.certified_accuracy(
            module, x_ev[:k].to(dev), y_ev[:k].to(dev))}
    module.robcurves_meta = meta
    return module
