"""Argument parsing shared by the subcommands: norms, eps lists, models and data."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from fractions import Fraction
from pathlib import Path

from .._norms import parse_norm

__all__ = ["parse_norms", "parse_eps", "parse_eps_list", "parse_floats", "parse_kv",
           "positive", "load_model_spec", "load_curves", "MODEL_FORMATS"]

#: What ``--model`` takes, for help texts.
MODEL_FORMATS = ("a robcurves model file (robcurves train), a TorchScript file, a torch.export "
                 ".pt2 archive (exported with a dynamic batch), a Keras .keras/.h5 file or "
                 "SavedModel folder, an ONNX file, a pickled scikit-learn estimator "
                 "(.pkl/.joblib), ARCH:CHECKPOINT (a PyTorch state dict such as RobustBench's "
                 "for a robcurves architecture, e.g. wrn-28-10:/path/to/model.pt), or "
                 "package.module:factory")


def parse_norms(text: str) -> list[float]:
    """``"linf,l2,l1"`` (any :data:`~robcurves.NormLike` spellings) -> ``[inf, 2.0, 1.0]``
    (duplicates removed, order kept)."""
    out: list[float] = []
    for part in text.split(","):
        if part.strip():
            p = parse_norm(part.strip())
            if p not in out:
                out.append(p)
    if not out:
        raise ValueError(f"no norm given in {text!r}; expected e.g. linf,l2,l1")
    return out


def parse_eps(text: str, option: str | None = None) -> float:
    """One eps: a decimal (``0.03``) or a fraction (``8/255``); must be >= 0, or > 0 when it is
    the value of ``option`` (named in the error)."""
    try:
        v = float(Fraction(text.strip())) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"cannot read eps {text!r}; expected a number like 0.03 or 8/255"
                         ) from None
    if option is not None and not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{option} must be a finite number > 0; got {text!r}")
    if not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"eps must be a finite number >= 0; got {text!r}")
    return v


def parse_eps_list(text: str) -> list[float]:
    """``"1/255,4/255,0.1"`` -> floats."""
    return [parse_eps(t) for t in text.split(",") if t.strip()]


def parse_floats(text: str, option: str) -> list[float]:
    """``"0.5,0.25"`` -> floats, or ``ValueError`` naming ``option`` and the bad value."""
    out = []
    for part in text.split(","):
        if part.strip():
            try:
                out.append(float(part))
            except ValueError:
                raise ValueError(f"{option}: cannot read {part.strip()!r} as a number in "
                                 f"{text!r}; expected comma-separated numbers") from None
    if not out:
        raise ValueError(f"{option} {text!r} holds no number; expected e.g. 0.5,0.5,0.5")
    return out


def parse_bounds(text: str | None) -> tuple[float, float] | None:
    """``--bounds``: ``None`` (not given: the data set's own bounds), ``none`` for unbounded
    inputs, or ``low,high`` with ``low < high``."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return (-math.inf, math.inf)
    bounds = tuple(parse_floats(text, "--bounds"))
    if len(bounds) != 2 or not bounds[0] < bounds[1]:
        raise ValueError(f"--bounds must be two numbers low,high with low < high, or 'none'; "
                         f"got {text!r}")
    return bounds


def positive(value: int | float | None, option: str, allow_zero: bool = False) -> None:
    """``ValueError`` naming ``option`` unless ``value`` is None or > 0 (>= 0 with
    ``allow_zero``)."""
    if value is None:
        return
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        raise ValueError(f"{option} must be {'>= 0' if allow_zero else '> 0'}; got {value}")


def add_input_args(p: argparse.ArgumentParser) -> None:
    """The options saying how a model sees the data (bounds, preprocessing, device) and which
    points it is evaluated on (split, training points), shared by ``curve`` and ``eval``;
    :func:`parse_input_args` checks them."""
    p.add_argument("--bounds", default=None,
                   help="input bounds low,high; 'none' for unbounded inputs (default: the data "
                        "set's, 0,1 for data on disk, unbounded for tsipras:...)")
    p.add_argument("--mean", default=None, help="preprocessing mean, comma-separated per channel")
    p.add_argument("--std", default=None, help="preprocessing std, comma-separated per channel")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (cuda if "
                   "available); default: where the model's parameters are (cpu for a file)")
    p.add_argument("--split", default=None, help="split for data folders (train/test); for a "
                   "robcurves model file and the --data it was trained with, the default is the "
                   "held-out part recorded in the model file")
    p.add_argument("--allow-train-points", action="store_true",
                   help="evaluate even on points the model was trained on (refused by default); "
                        "every output then carries a warning")


def parse_input_args(args: argparse.Namespace) -> dict:
    """``--bounds``, ``--mean`` and ``--std`` of :func:`add_input_args`, checked before any
    work: ``{"bounds": (low, high) or None (the data set's), "mean": [...] or None, "std":
    [...] or None}``."""
    bounds = parse_bounds(args.bounds)  # None: the data set's (0, 1 on disk; tsipras: none)
    mean = parse_floats(args.mean, "--mean") if args.mean is not None else None
    std = parse_floats(args.std, "--std") if args.std is not None else None
    if std is not None and min(std) <= 0:
        raise ValueError(f"--std must be > 0 everywhere; got {args.std!r}")
    return {"bounds": bounds, "mean": mean, "std": std}


def add_backend_args(p: argparse.ArgumentParser, what: str, gpus: bool = True) -> None:
    """``--backend local|ray`` with ``--address``, ``--workers`` (and ``--gpus-per-worker``);
    ``what``: what the Ray backend does in this command."""
    p.add_argument("--backend", default="local", choices=["local", "ray"],
                   help=f"local (this process, the default) or ray: {what} (needs "
                        'pip install "robcurves[ray]")')
    p.add_argument("--address", default=None, help="with --backend ray: auto (the cluster of "
                   "this machine) or HOST:PORT (default: a new local Ray instance)")
    p.add_argument("--workers", type=int, default=None, help="with --backend ray: worker "
                   "processes (default: as many as the cluster has room for)")
    if gpus:
        p.add_argument("--gpus-per-worker", type=float, default=0.0,
                       help="with --backend ray: GPUs each worker reserves (default 0)")


def check_backend(args: argparse.Namespace):
    """``--backend`` and its options: a :class:`~robcurves._ray.RayOptions` for ``ray`` (Ray
    installed, options valid, connected to the cluster), ``None`` for ``local``."""
    gpus = getattr(args, "gpus_per_worker", 0.0)
    if args.backend != "ray":
        for flag, value, default in (("--address", args.address, None),
                                     ("--workers", args.workers, None),
                                     ("--gpus-per-worker", gpus, 0.0)):
            if value != default:
                raise ValueError(f"{flag} applies to --backend ray only; got --backend "
                                 f"{args.backend}")
        return None
    from .._ray import RayOptions, connect

    options = RayOptions(args.address, args.workers, gpus)
    connect(options.address)  # Ray installed and the cluster reachable, before any work
    return options


def ray_kwargs(options, gpus: bool = True) -> dict:
    """The backend keyword arguments of ``distances`` and ``certify`` (of
    ``interclass_distances`` with ``gpus=False``) for :func:`check_backend`'s options (none
    for local)."""
    if options is None:
        return {}
    out = {"backend": "ray", "ray_address": options.address, "workers": options.workers}
    if gpus:
        out["gpus_per_worker"] = options.gpus_per_worker
    return out


def parse_kv(text: str) -> tuple[str, object]:
    """``"width=4"`` -> ``("width", 4)`` (JSON values, else the string); for argparse."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k.strip(), json.loads(v)
    except json.JSONDecodeError:
        return k.strip(), v


def load_curves(paths: list[str]) -> list:
    """Curve files, each error naming its file."""
    from ..curve import RobustnessCurve

    curves = []
    for path in paths:
        try:
            curves.append(RobustnessCurve.load(path))
        except FileNotFoundError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            msg = str(exc) if not isinstance(exc, KeyError) else f"missing field {exc}"
            if str(path) not in msg:
                msg = f"curve file {str(path)!r}: {msg}"
            raise ValueError(msg) from None
    return curves


def _is_checkpoint_spec(arch: str, ckpt: str) -> bool:
    """``ARCH:CHECKPOINT``: a path (an existing file, or a name with a folder or a suffix)
    after a known architecture, as opposed to ``package.module:factory``. A name that cannot
    be a module (it has a ``-``) before a path is a mistyped architecture: ``ValueError``
    listing the known ones."""
    from ..train.archs import resolve_arch

    if not (Path(ckpt).exists() or "/" in ckpt or Path(ckpt).suffix):
        return False
    try:
        resolve_arch(arch)
    except ValueError:
        if "-" in arch:
            raise
        return False
    return True


def model_name(spec: str) -> str:
    """The default name of the model of ``--model SPEC``: the file stem of a model file, else the
    spec itself."""
    return Path(spec).stem if Path(spec).exists() else spec


def load_model_spec(spec: str):
    """Load a torch model from a CLI spec.

    Accepted: a robcurves model file (``robcurves train`` output), a TorchScript file, a
    ``torch.export`` archive (``.pt2``), a Keras file or SavedModel folder, an ONNX file, a
    pickled scikit-learn estimator (see :func:`robcurves.bridges.load_any_model`),
    ``ARCH:CHECKPOINT`` (a state dict on disk for a robcurves architecture, e.g.
    ``wrn-28-10:/path/to/model.pt``: :func:`robcurves.train.load_checkpoint`; a known
    architecture name before the colon takes precedence over a module of that name), or
    ``package.module:factory`` (a callable returning any of these or a robcurves
    ``Classifier``; the current folder is importable). Returns the model for ``wrap``.
    """
    import torch

    path = Path(spec)
    if path.exists():
        from ..train import is_model_file, load_model

        if is_model_file(path):  # robcurves' own model files carry architecture and metadata
            return load_model(path)
        if path.is_dir() or path.suffix.lower() in (".keras", ".h5", ".hdf5", ".onnx", ".pkl",
                                                    ".pickle", ".joblib"):
            from ..bridges import load_any_model  # Keras, SavedModel, ONNX, scikit-learn

            return load_any_model(path)
        if path.suffix == ".pt2":
            try:
                return torch.export.load(str(path)).module()
            except Exception as exc:  # noqa: BLE001 - report what the file is not
                raise ValueError(f"cannot load model {spec!r} as a torch.export archive "
                                 f"({type(exc).__name__}: {exc})") from None
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - report what the file is not
            raise ValueError(f"cannot load model {spec!r}: not a robcurves model file, "
                             f"TorchScript file or torch.export archive ({exc})") from None
    arch, sep, ckpt = spec.partition(":")
    if sep and _is_checkpoint_spec(arch, ckpt):
        from ..train import load_checkpoint

        return load_checkpoint(ckpt, arch)
    if ":" in spec:
        mod_name, _, attr = spec.partition(":")
        if "" not in sys.path and "." not in sys.path:
            sys.path.insert(0, "")
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            raise ValueError(f"cannot import module {mod_name!r} of model spec {spec!r}: {exc}"
                             ) from None
        obj = mod
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ValueError(f"module {mod_name!r} has no attribute {attr!r}")
            obj = getattr(obj, part)
        from ..bridges import detect_framework
        from ..model import Classifier

        model = obj() if callable(obj) and detect_framework(obj) is None else obj

        if not isinstance(model, Classifier) and detect_framework(model) is None:
            raise ValueError(f"{spec!r} returned a {type(model).__name__}; expected a "
                             "torch.nn.Module, a Keras, ONNX or scikit-learn model, or a "
                             "robcurves Classifier (e.g. wrap(fn, framework='jax', params=p))")
        return model
    raise FileNotFoundError(f"model {spec!r} is neither an existing file nor a "
                            "package.module:factory spec")
