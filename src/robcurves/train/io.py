"""Model files: a zip archive holding ``meta.json`` (architecture, data set, method, threat
model, seed, epochs, accuracies, training time, format name and version, SHA-256 of the weights)
and ``weights.pt`` (the ``state_dict``, read back with ``torch.load(weights_only=True)``, so
loading a file never runs code from it).
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

from .archs import build

__all__ = ["save_model", "load_model", "is_model_file", "read_meta", "MODEL_FORMAT",
           "MODEL_VERSION"]

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
