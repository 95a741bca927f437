"""Model files: a zip archive holding ``meta.json`` (architecture, data set, method, threat
model, seed, epochs, accuracies, training time, format name and version, SHA-256 of the weights)
and ``weights.pt`` (the ``state_dict``, read back with ``torch.load(weights_only=True)``, so
loading a file never runs code from it).

:func:`load_checkpoint` reads a plain PyTorch state dict saved by other code (RobustBench's
format: ``torch.save(model.state_dict())``, possibly wrapped) into one of robcurves'
architectures.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from pathlib import Path

import torch
from torch import nn

from .archs import build, resolve_arch

__all__ = ["save_model", "load_model", "load_checkpoint", "is_model_file", "read_meta",
           "MODEL_FORMAT", "MODEL_VERSION"]

MODEL_FORMAT = "robcurves-model"
MODEL_VERSION = 1
_META, _WEIGHTS = "meta.json", "weights.pt"


def _json_safe(obj: object) -> object:
    """Non-finite floats become ``None`` so the JSON stays standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def save_model(module: nn.Module, path: str | Path, meta: dict | None = None) -> Path:
    """Write ``module`` and its metadata (``meta`` or ``module.robcurves_meta``) to ``path``.

    The metadata must name the architecture (``arch``, ``arch_kwargs``, ``input_shape``,
    ``num_classes``) so :func:`load_model` can rebuild the module; :func:`robcurves.train.fit`
    records all of it. Returns the path written.
    """
    meta = dict(meta if meta is not None else getattr(module, "robcurves_meta", None) or {})
    missing = [k for k in ("arch", "input_shape", "num_classes") if k not in meta]
    if missing:
        raise ValueError(f"cannot save: the metadata lacks {', '.join(missing)}; train the model "
                         "with robcurves.train.fit or pass meta={'arch': ..., 'input_shape': ..., "
                         "'num_classes': ...}")
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buf)
    weights = buf.getvalue()
    meta.update({"format": MODEL_FORMAT, "format_version": MODEL_VERSION,
                 "weights_sha256": hashlib.sha256(weights).hexdigest()})
    meta.setdefault("arch_kwargs", {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(_META, json.dumps(_json_safe(meta), indent=2, sort_keys=True))
        zf.writestr(_WEIGHTS, weights)
    tmp.replace(path)
    return path


def is_model_file(path: str | Path) -> bool:
    """Whether ``path`` looks like a robcurves model file (a zip holding ``meta.json`` whose
    format is ``robcurves-model``); never raises for other files."""
    try:
        with zipfile.ZipFile(path) as zf:
            if _META not in zf.namelist():
                return False
            return json.loads(zf.read(_META)).get("format") == MODEL_FORMAT
    except (OSError, zipfile.BadZipFile, ValueError, AttributeError):
        return False


def read_meta(path: str | Path) -> dict:
    """The metadata of a model file, checked for format and version (weights not read)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if _META not in names or _WEIGHTS not in names:
                raise ValueError(f"{str(path)!r} is not a robcurves model file: expected "
                                 f"{_META} and {_WEIGHTS} inside, found {sorted(names)}")
            meta = json.loads(zf.read(_META))
    except zipfile.BadZipFile:
        raise ValueError(f"{str(path)!r} is not a robcurves model file (not a zip archive, or a "
                         "truncated/corrupted one)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"model file {str(path)!r} has a corrupted {_META}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{str(path)!r} is not a robcurves model file: format {found!r}, "
                         f"expected {MODEL_FORMAT!r}")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > MODEL_VERSION or version < 1:
        raise ValueError(f"model file {str(path)!r} has format version {version!r}; this "
                         f"robcurves reads versions 1..{MODEL_VERSION}")
    return meta


def load_model(path: str | Path, device: str | None = None) -> nn.Module:
    """Rebuild the module saved by :func:`save_model`, in eval mode, with its metadata in
    ``module.robcurves_meta``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a robcurves model file, an unsupported version, weights whose checksum
            does not match (corruption), or weights that do not fit the recorded architecture.
    """
    path = Path(path)
    meta = read_meta(path)
    try:
        with zipfile.ZipFile(path) as zf:
            weights = zf.read(_WEIGHTS)
    except (zipfile.BadZipFile, OSError) as exc:  # CRC errors land here too
        raise ValueError(f"model file {str(path)!r} is corrupted: {exc}") from None
    digest = hashlib.sha256(weights).hexdigest()
    if digest != meta.get("weights_sha256"):
        raise ValueError(f"model file {str(path)!r} is corrupted: the weights' SHA-256 "
                         f"{digest[:12]}... does not match the recorded "
                         f"{str(meta.get('weights_sha256'))[:12]}...")
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unreadable payload the same way
        raise ValueError(f"model file {str(path)!r} has unreadable weights: {exc}") from None
    try:
        module = build(meta["arch"], meta["input_shape"], meta["num_classes"],
                       **(meta.get("arch_kwargs") or {}))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"model file {str(path)!r} describes an architecture this robcurves "
                         f"cannot build: {exc}") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ValueError(f"model file {str(path)!r}: the weights do not match architecture "
                         f"{meta['arch']!r} {meta.get('arch_kwargs') or {}} with input shape "
                         f"{meta['input_shape']} and {meta['num_classes']} classes "
                         f"({' '.join(first[:3])})") from None
    module.robcurves_meta = meta
    if device is not None:
        module.to(device)
    return module.eval()


#: keys under which training scripts nest the state dict
_NESTED = ("state_dict", "model_state_dict", "model")
#: prefixes wrappers add to every key (``nn.DataParallel``: ``module.``)
_PREFIXES = ("module.", "model.")
#: keys of modules RobustBench's WideResNet may define but never uses (TRADES' ``sub_block1``)
_UNUSED = ("sub_block1.",)


def _unwrap_state(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside what ``torch.load`` returned, with wrapper prefixes removed."""
    for _ in range(3):  # {"state_dict": {...}} and the like, possibly nested once more
        if isinstance(obj, dict) and not any(torch.is_tensor(v) for v in obj.values()):
            key = next((k for k in _NESTED if isinstance(obj.get(k), dict)), None)
            if key is None:
                break
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        found = (f"a dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict)
                 else f"a {type(obj).__name__}")
        raise ValueError(f"checkpoint {str(path)!r} holds {found}; expected a state dict "
                         f"(parameter name -> tensor), possibly under one of the keys "
                         f"{', '.join(map(repr, _NESTED))}")
    state = dict(obj)
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return {k: v for k, v in state.items() if not k.startswith(_UNUSED)}


def _list(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_checkpoint(path: str | Path, arch: str, *, num_classes: int | None = None,
                    input_shape: tuple[int, ...] | None = None, device: str | None = None,
                    **arch_kwargs) -> nn.Module:
    """Load a PyTorch state dict from ``path`` into a fresh ``arch`` network, in eval mode.

    This is how RobustBench-format checkpoints a user has on disk are read (``--model
    wrn-28-10:/path/to/checkpoint.pt`` on the command line). Handled wrappings: the state dict
    itself, or nested under ``"state_dict"``, ``"model_state_dict"`` or ``"model"``; keys all
    prefixed by ``module.`` (``nn.DataParallel``) or ``model.``; the unused ``sub_block1.*``
    weights that TRADES-derived WideResNet checkpoints carry are dropped. The file is read with
    ``torch.load(weights_only=True)``: loading it never runs code from it.

    Normalisation: the architectures apply none; RobustBench's WideResNet checkpoints expect
    raw inputs in [0, 1], which is what robcurves passes by default. A checkpoint trained on
    normalised inputs needs the preprocessing given separately (``robcurves.wrap(...,
    preprocessing={"mean": ..., "std": ...})``, ``--mean``/``--std`` on the command line).

    Args:
        path: the checkpoint file.
        arch: an architecture name (:func:`robcurves.train.arch_names`, or ``wrn-D-K``).
        num_classes: default: the output size of the state dict's last 2-D weight (``fc``).
        input_shape: ``(C, H, W)`` or the shape the architecture needs; default ``(C, 32,
            32)`` with C the input channels of the first convolution.
        device: where to put the module (default CPU).
        arch_kwargs: the architecture's options.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable file, no state dict inside, an unknown architecture (listing the
            known ones), or keys/shapes that do not fit it (naming the missing, unexpected and
            mis-shaped keys).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    resolve_arch(arch)  # an unknown name fails here, before the file is read
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unreadable payload the same way
        raise ValueError(f"cannot read checkpoint {str(path)!r} as a PyTorch state dict "
                         f"({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})"
                         ) from None
    state = _unwrap_state(raw, path)
    if num_classes is None:
        mats = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
        if not mats:
            raise ValueError(f"checkpoint {str(path)!r} has no 2-D weight to read the number "
                             "of classes from; pass num_classes")
        num_classes = int(mats[-1].shape[0])
    if input_shape is None:
        convs = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 4]
        if not convs:
            raise ValueError(f"checkpoint {str(path)!r} has no convolution to read the input "
                             "channels from; pass input_shape")
        input_shape = (int(convs[0].shape[1]), 32, 32)
    module = build(arch, input_shape, num_classes, **arch_kwargs)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = ([f"missing keys: {_list(missing)}"] if missing else []) + (
            [f"unexpected keys: {_list(unexpected)}"] if unexpected else []) + (
            [f"shape mismatches: {_list(shapes, 4)}"] if shapes else [])
        opts = f" {arch_kwargs}" if arch_kwargs else ""
        raise ValueError(f"checkpoint {str(path)!r} does not fit architecture {arch!r}{opts} "
                         f"with input shape {tuple(input_shape)} and {num_classes} classes: "
                         f"{'; '.join(parts)}")
    module.load_state_dict(state, strict=True)
    module.robcurves_meta = {"arch": arch, "arch_kwargs": dict(arch_kwargs),
                             "input_shape": list(input_shape), "num_classes": int(num_classes),
                             "checkpoint": str(path)}
    if device is not None:
        module.to(device)
    return module.eval()
