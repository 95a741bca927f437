"""``distances()``: per-point minimal adversarial distances, verified, batched and resumable."""

from __future__ import annotations

import functools
import inspect
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._device import BATCH_CAP, attack_batch_size
from ._norms import NormLike, lp_norm_np, norm_name, parse_norm
from ._ray import ModelSpec, RayOptions, backend_options, run_batches_ray
from ._threads import using_threads
from .attacks import ATTACKS, get_attack
from .attacks._core import check_hyperparameters
from .classifier import check_finite_logits
from .model import Bounds, Classifier, as_classifier
from .results import Distances
from .store import BatchStore, fingerprint_data, fingerprint_model, run_batches

__all__ = ["distances", "verify_adversarials", "fingerprint_model", "fingerprint_data",
           "probe_model", "check_finite_logits", "check_attack_options"]


def _as_inputs(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor
               ) -> tuple[np.ndarray, np.ndarray]:
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"inputs must be floating point in the model's bounds; got dtype "
                         f"{x.dtype} (scale integer images to [0, 1] first)")
    if y.ndim != 1:
        raise ValueError(f"labels must be one-dimensional (N,); got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"labels must be integers; got dtype {y.dtype} with fractional values")
    if x.ndim < 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same length; got x of shape {x.shape} and "
                         f"{y.shape[0]} labels")
    return x.astype(np.float32, copy=False), y.astype(np.int64, copy=False)


def probe_model(model: Classifier, x: np.ndarray, name: str | None = None) -> int:
    """Run the model once on (up to) two points of ``x`` and return its number of outputs.

    A model that does not fit the data fails here, before any work, with one line naming the
    model (``name``, e.g. its file) and what was expected, instead of a traceback from deep in
    an attack: an input shape the model does not take, preprocessing with the wrong number of
    channels, a ``torch.export`` archive exported with a fixed batch size.
    """
    who = f"model {name!r}" if name else "the model"
    xb = np.ascontiguousarray(x[:2])
    shape = tuple(xb.shape[1:])
    try:
        z = model.predict_logits(xb)
    except Exception as exc:  # noqa: BLE001 - translated into what the user must change
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        if "size()[0] ==" in text:  # a torch.export guard on the batch dimension
            raise ValueError(
                f"{who} was exported with a fixed batch size and cannot take a batch of "
                f"{xb.shape[0]} ({first}); export it with a dynamic batch dimension: "
                "torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim('batch')},))"
                ) from None
        if "channels" in text and ("conv" in text.lower() or "weight of size" in text):
            hint = ("; check --mean/--std (one value per channel)" if _has_preprocessing(model)
                    else "")
            raise ValueError(f"{who} does not take inputs of shape {shape} (channels first): "
                             f"{first}{hint}") from None
        raise ValueError(f"{who} fails on inputs of shape {shape} from the data ({first}); "
                         "expected a model taking a batch of such inputs") from None
    if z.ndim != 2 or z.shape[0] != xb.shape[0]:
        raise ValueError(f"{who} returned outputs of shape {tuple(z.shape)} for {xb.shape[0]} "
                         "inputs; expected logits of shape (batch, classes)")
    return int(z.shape[1])


def _has_preprocessing(model: Classifier) -> bool:
    """Whether a wrapped model normalises its inputs (``mean``/``std``) before the network."""
    return any(getattr(model, a, None) is not None for a in ("mean", "std", "pre"))


def check_attack_options(attack: str, options: dict) -> None:
    """``ValueError`` before any work when ``attack`` does not take one of ``options``
    (naming the attacks that do) or one of them has a value it cannot take (the wrong type, a
    count below its least value: see :func:`robcurves.attacks._core.check_hyperparameters`)."""
    fn = ATTACKS[attack][0] if attack in ATTACKS else None
    if fn is None:
        return  # get_attack reports unknown names
    sig = inspect.signature(fn)  # the public one: the implementation's annotations
    params = sig.parameters
    if any(q.kind is inspect.Parameter.VAR_KEYWORD for q in params.values()):
        return
    taken = {k for k, q in params.items() if q.kind is not inspect.Parameter.POSITIONAL_ONLY}
    for key in options:
        if key not in taken:
            takers = sorted(a for a, (f, _) in ATTACKS.items()
                            if key in inspect.signature(f).parameters)
            who = (f"attacks that take it: {', '.join(takers)}" if takers
                   else "no attack takes it")
            raise ValueError(f"attack {attack!r} takes no option {key!r} ({who})")
    check_hyperparameters(attack, sig, options)


def verify_adversarials(model: Classifier, x: torch.Tensor, y: torch.Tensor,
                        adv: torch.Tensor, p: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Re-check adversarials: inside the bounds, misclassified, finite.

    An adversarial found exactly on the decision boundary can flip back when the model is
    evaluated in a batch of another composition (float32 sums round differently). Such a
    point is pushed outward along its own perturbation by factors ``1 + 1e-6 .. 1 + 1e-3``
    (clipped to the box) and re-checked; the distance is always that of the input that passed.

    Returns the distances (float64 norm of ``adv - x`` where valid, ``+inf`` elsewhere; 0 for
    clean misclassified points), the adversarials with NaN rows where not valid, and how many
    changed inputs were rejected (a changed input that is not a valid adversarial).
    """
    lo, hi = model.bounds
    adv = adv.detach().cpu().to(torch.float32)
    x = x.detach().cpu().to(torch.float32)
    y = y.detach().cpu()
    shape = (-1,) + (1,) * (adv.ndim - 1)
    flat = adv.reshape(adv.shape[0], -1)
    inside = torch.isfinite(flat).all(1) & (flat >= lo).all(1) & (flat <= hi).all(1)
    changed = ~(flat == x.reshape(x.shape[0], -1)).all(1)
    cand = torch.where(inside.reshape(shape), adv, x)
    valid = model.predict(cand) != y
    for factor in (1e-6, 1e-5, 1e-4, 1e-3):
        retry = (inside & changed & ~valid).nonzero().squeeze(1)
        if retry.numel() == 0:
            break
        pushed = (x[retry] + (cand[retry] - x[retry]) * (1 + factor)).clamp(lo, hi)
        ok = model.predict(pushed) != y[retry]
        cand[retry[ok]] = pushed[ok]
        valid[retry[ok]] = True
    valid = (valid & (inside | ~changed)).numpy()
    adv_np = cand.numpy()
    x_np = x.numpy()
    d = np.full(x.shape[0], np.inf)
    if valid.any():
        d[valid] = lp_norm_np(adv_np[valid] - x_np[valid], p)
    rejected = int((changed.numpy() & ~valid).sum())
    out = adv_np.copy()
    out[~valid] = np.nan
    return d, out, rejected


def distances(model: nn.Module | Classifier | ModelSpec, x: np.ndarray | torch.Tensor,
              y: np.ndarray | torch.Tensor, norm: NormLike = "inf", *, attack: str = "auto",
              bounds: Bounds = None, batch_size: int | None = None,
              seed: int = 0, indices: np.ndarray | None = None,
              return_adversarials: bool = False, store: str | Path | None = None,
              progress: bool = False, threads: int | None = None, backend: str = "local",
              ray_address: str | None = None, workers: int | None = None,
              gpus_per_worker: float = 0.0, **attack_kwargs) -> Distances:
    """Smallest adversarial perturbation found per point (an upper bound on the true minimum).

    Args:
        model: a wrapped :class:`~robcurves.model.Classifier`, a ``torch.nn.Module``
            (wrapped with ``bounds``), or a :class:`~robcurves.ModelSpec` (a model file or
            ``module:factory`` that each Ray worker loads itself).
        bounds: input bounds for an unwrapped module (default ``(0, 1)``; ``(None, None)``
            or ``(-inf, inf)`` for unbounded inputs); a wrapped classifier keeps its own, and
            other ``bounds`` given with it are refused.
        x: raw inputs ``(N, ...)`` inside the model's bounds; y: integer labels ``(N,)``.
        norm: ``"inf"``/``"linf"``/``float("inf")``, ``2``/``"l2"`` or ``1``/``"l1"``.
        attack: a name from :data:`robcurves.attacks.ATTACKS` (default ``"auto"``; for a
            label-only model, ``"auto"`` means the decision-based ``"hsja"``).
        batch_size: points attacked together (default: the model's batch size; on CUDA, as
            many as half the free GPU memory holds, measured on one pass of a few points,
            at most 4096: see :func:`robcurves.batch_size_for`). Part of a stored run's
            settings: resume with the same batch size.
        seed: seeds random starts; batch ``k`` uses ``seed`` and its start index, so results
            do not depend on which batches were computed in which run.
        indices: positions of the points in their data set (default ``0..N-1``).
        return_adversarials: keep the adversarial inputs in the result.
        store: a folder where each finished batch is saved; rerunning with the same settings
            resumes and recomputes nothing already done.
        progress: show a progress bar.
        threads: torch CPU threads for this call (default: leave torch's setting; see
            :func:`robcurves.set_threads`). On CPU the count is recorded in ``settings`` and in
            the ``store`` manifest: float32 sums round differently with another thread count
            (about the 8th digit), so a stored run resumes only with the same count.
        backend: ``"local"`` (this process) or ``"ray"``: the same batches computed by Ray
            actors, each loading the model once (a ``ModelSpec``, else a pickled copy of
            ``model``) and using this process's thread count, so the distances are
            byte-identical to the local backend's; finished batches go into ``store`` as they
            arrive, so a killed worker or driver loses only the batches in flight. Needs
            ``pip install "robcurves[ray]"``.
        ray_address: for ``backend="ray"``: ``None`` (the Ray instance this process is
            connected to, else a new local one), ``"auto"`` or ``"HOST:PORT"``.
        workers: Ray actors (default: as many as the cluster has room for).
        gpus_per_worker: GPUs each Ray actor reserves.
        **attack_kwargs: passed to the attack (for example ``steps``, ``restarts``).

    Returns:
        :class:`Distances` with ``kind="upper"``: misclassified points at 0, unbroken at +inf,
        every other distance the measured norm of a re-checked adversarial;
        ``cost["rejected"]`` counts returned inputs that failed the re-check.

    Raises:
        ValueError: bad inputs, an option the attack does not take, a model that fails on the
            data or whose logits are NaN or infinite on some points (named by index), all
            before any attack work.
    """
    ray_options = backend_options(backend, ray_address, workers, gpus_per_worker)
    with using_threads(threads):
        return _distances(model, x, y, norm, attack, bounds, batch_size, seed, indices,
                          return_adversarials, store, progress, attack_kwargs, ray_options)


def _distances(model, x, y, norm, attack, bounds, batch_size, seed, indices,
               return_adversarials, store, progress, attack_kwargs,
               ray_options: RayOptions | None = None) -> Distances:
    p = parse_norm(norm)
    shipped = model  # what Ray workers get: a ModelSpec they load, else the model pickled
    if isinstance(model, ModelSpec):
        model = model.load()
    clf = as_classifier(model, bounds)
    if attack == "auto" and getattr(clf, "label_only", False):
        # no gradients: the best available is the decision-based pipeline
        attack = "hsja"
    attack_fn = get_attack(attack, p)
    check_attack_options(attack, attack_kwargs)
    xs, ys = _as_inputs(x, y)
    clf.check_inputs(xs)
    n = xs.shape[0]
    idx = np.arange(n, dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
    if idx.shape != (n,):
        raise ValueError(f"indices must have shape ({n},); got {idx.shape}")
    if n == 0:
        raise ValueError("no points to attack (x is empty)")
    if ys.min() < 0:
        raise ValueError(f"labels must be >= 0; found {int(ys.min())}")
    k = probe_model(clf, xs)
    check_finite_logits(clf.predict_logits(xs), idx)
    if ys.max() >= k:
        raise ValueError(f"labels must lie in 0..{k - 1} for a model with {k} outputs; "
                         f"found {int(ys.max())}")
    if batch_size is None and torch.device(clf.device).type == "cuda":
        # as many points as a share of the free GPU memory holds, capped
        batch_size = attack_batch_size(clf, xs, cap=max(clf.batch_size, BATCH_CAP))
    bs = int(batch_size or clf.batch_size)
    takes_seed = "seed" in inspect.signature(attack_fn).parameters
    settings = {"attack": attack, "norm": norm_name(p), "seed": seed, "batch_size": bs,
                **{k_: v for k_, v in attack_kwargs.items()}}
    if torch.device(clf.device).type == "cpu":
        settings["threads"] = torch.get_num_threads()  # the last digits depend on it
    if getattr(attack_fn, "black_box", False):
        settings["black_box"] = True  # decision-based: usually looser than gradient attacks
    bstore = None
    if store is not None:
        bstore = BatchStore(store, {**settings, "n": n, "data": fingerprint_data(xs, ys, idx),
                                    "model": fingerprint_model(clf),
                                    "adversarials": bool(return_adversarials)})

    def compute(clf: Classifier, start: int, stop: int) -> Distances:
        return _attack_batch(clf, attack_fn, xs[start:stop], ys[start:stop], idx[start:stop], p,
                             attack, settings, seed + start if takes_seed else None,
                             return_adversarials, attack_kwargs)

    label = f"{attack} {norm_name(p)}" if progress else None
    if ray_options is None:
        result = run_batches(n, bs, functools.partial(compute, clf), bstore, progress=label)
    else:
        result = run_batches_ray(n, bs, compute, clf if shipped is model else shipped, bstore,
                                 ray_options, torch.get_num_threads(), progress=label,
                                 fingerprint=fingerprint_model(clf))
    rejected = int(result.cost.get("rejected", 0))
    if rejected:
        warnings.warn(f"{rejected} inputs returned by attack {attack!r} failed the re-check "
                      "(outside the bounds or not misclassified) and count as unbroken",
                      stacklevel=3)
    return result


def _attack_batch(clf: Classifier, attack_fn, xb: np.ndarray, yb: np.ndarray, ib: np.ndarray,
                  p: float, name: str, settings: dict, seed: int | None, keep_adv: bool,
                  kwargs: dict) -> Distances:
    t0 = time.perf_counter()
    f0, b0 = clf.n_forward, clf.n_backward
    x_t = torch.from_numpy(np.ascontiguousarray(xb)).to(clf.device)
    y_t = torch.from_numpy(yb).to(clf.device)
    extra = dict(kwargs)
    if seed is not None:
        extra["seed"] = seed
    adv = attack_fn(clf, x_t, y_t, p, **extra)
    f1, b1 = clf.n_forward, clf.n_backward  # the attack's own passes, not the checks below
    pred = clf.predict(x_t).numpy()
    d, adv_np, rejected = verify_adversarials(clf, x_t, y_t, adv, p)
    m = xb.shape[0]
    return Distances(
        distances=d, labels=yb, predictions=pred, indices=ib, norm=p, method=name, kind="upper",
        settings=settings,
        cost={"forward_per_point": (f1 - f0) / m, "backward_per_point": (b1 - b0) / m,
              "seconds": time.perf_counter() - t0, "rejected": rejected},
        adversarials=adv_np if keep_adv else None)
