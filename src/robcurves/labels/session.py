"""A labelling session: clean images and adversarials of a curve's points as PNG files.

Kinds of images (the page never says which one it shows):

- ``clean``: the point itself (the controls);
- ``minimal``: the minimal adversarial found for the point (distance d* > 0);
- ``eps``: for a chosen eps >= d*, the same perturbation stretched to norm eps,
  ``clip(x + (eps / d*) * (x_adv - x))`` to the input bounds (clipping can only shorten it), kept
  only where the model still misclassifies it.

Points the model misclassifies (d* = 0) get no adversarial image: their adversarial is the clean
image, so its labels are the clean image's. Unbroken points (d* = +inf) get none either.

Each image is written as an 8-bit PNG (the bounds mapped to 0..255, rounded) named by a random
16-hex-digit id; ``manifest.json`` records per id the kind, the point's position in the data set,
its label, d*, eps, the model's prediction on the float image and on the 8-bit PNG as people see it.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._norms import norm_name, parse_norm

__all__ = ["CANNOT_TELL", "FORMAT", "Session", "prepare_session"]

FORMAT = "robcurves-label-session"
CANNOT_TELL = -1  #: the answer stored for "cannot tell"


@dataclass(frozen=True)
class Session:
    """A prepared session folder (``manifest.json`` and ``images/``).

    Attributes:
        path: the folder. id: random session id (a label database belongs to one session).
        norm: the curve's norm. name: the curve's model name. classes: class names.
        eps: the chosen eps of the ``eps`` images. bounds: the input bounds.
        items: per image id: ``kind``, ``point`` (position in the data set), ``label``,
            ``distance`` (d*), ``eps`` (None for clean and minimal), ``model_prediction`` and
            ``png_prediction`` (the model's class for the float image and the 8-bit PNG).
        points: per point of the session: ``index``, ``label``, ``prediction``, ``distance``.
    """

    path: Path
    id: str
    norm: float
    name: str
    classes: tuple[str, ...]
    eps: tuple[float, ...]
    bounds: tuple[float, float]
    items: dict[str, dict]
    points: tuple[dict, ...]

    @classmethod
    def load(cls, path: str | Path) -> Session:
        path = Path(path)
        f = path / "manifest.json"
        if not f.is_file():
            raise FileNotFoundError(f"{path} is not a labelling session: no manifest.json "
                                    "(write one with `robcurves label prepare`)")
        m = json.loads(f.read_text())
        if m.get("format") != FORMAT or m.get("version") != 1:
            raise ValueError(f"{f} is not a {FORMAT} version 1 file; found format "
                             f"{m.get('format')!r} version {m.get('version')!r}")
        pts = tuple({**p, "distance": math.inf if p["distance"] is None else p["distance"]}
                    for p in m["points"])
        return cls(path=path, id=m["id"], norm=parse_norm(m["norm"]), name=m["name"],
                   classes=tuple(m["classes"]), eps=tuple(m["eps"]),
                   bounds=tuple(m["bounds"]), items=m["items"], points=pts)

    def image_path(self, image_id: str) -> Path:
        return self.path / "images" / f"{image_id}.png"

    @property
    def settings(self) -> dict:
        return json.loads((self.path / "manifest.json").read_text())["settings"]


def prepare_session(out_dir: str | Path, curve, model, data, *, eps: Sequence[float] = (),
                    n: int | None = None, attack: str = "auto", seed: int = 0,
                    settings: dict | None = None) -> Session:
    """Compute the images of a labelling session for the first ``n`` points of ``curve``.

    Args:
        out_dir: new or empty folder (an existing session there is refused).
        curve: a :class:`~robcurves.RobustnessCurve` of ``model`` on ``data`` (its ``indices``
            locate the points; its labels must match the data's).
        model: the model (wrapped or a ``torch.nn.Module``); minimal adversarials are
            recomputed with :func:`robcurves.distances` (curve files keep no adversarials).
        data: a :class:`~robcurves.data.Dataset` of images ``(N, C, H, W)``, C = 1 or 3.
        eps: the chosen eps for stretched adversarials (each > 0).
        n: number of points (default: all of the curve's).
        attack, seed: passed to :func:`robcurves.distances`.
        settings: extra facts saved in the manifest (the command line that made it).
    """
    from PIL import Image

    from ..evaluate import distances
    from ..model import Classifier, wrap
    from ..report.gallery import to_image

    out = Path(out_dir)
    if (out / "manifest.json").exists():
        raise ValueError(f"{out} already holds a labelling session; remove it or choose "
                         "another folder")
    eps = tuple(float(e) for e in eps)
    bad = [e for e in eps if not (e > 0 and math.isfinite(e))]
    if bad:
        raise ValueError(f"eps must be finite and > 0; got {bad}")
    recorded = (curve.metadata or {}).get("data") or {}
    hint = ""
    if recorded.get("name") and recorded.get("name") != data.name:
        split = f":split={recorded['split']}" if recorded.get("split") else ""
        hint = (f" (the curve records data {recorded['name']!r}; pass that data, e.g. "
                f"{recorded.get('spec', recorded['name'])}{split})")
    idx = np.arange(len(curve.distances)) if curve.indices is None else np.asarray(curve.indices)
    if n is not None:
        if n < 1:
            raise ValueError(f"n must be >= 1; got {n}")
        idx = idx[:n]
    if idx.size and (idx.min() < 0 or idx.max() >= data.n):
        raise ValueError(f"the curve's point indices reach {int(idx.max())}, but the data set "
                         f"{data.name!r} has {data.n} points: is it the curve's data set?{hint}")
    x, y = data.x[idx], data.y[idx]
    to_image(x[0])
    if curve.labels is not None and not np.array_equal(np.asarray(curve.labels)[:idx.size], y):
        raise ValueError(f"the curve's labels differ from those of data set {data.name!r} at "
                         f"its indices: is it the curve's data set?{hint}")
    clf = model if isinstance(model, Classifier) else wrap(model)
    d = distances(clf, x, y, curve.norm, attack=attack, seed=seed, indices=idx,
                  return_adversarials=True)
    lo, hi = (float(b) for b in clf.bounds)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    pending: list[tuple[dict, np.ndarray]] = []

    def add(kind: str, i: int, img: np.ndarray, e: float | None) -> None:
        pending.append(({"kind": kind, "point": int(idx[i]), "label": int(y[i]),
                         "distance": float(d.distances[i]), "eps": e}, img))

    for i in range(idx.size):
        add("clean", i, x[i], None)
        di = d.distances[i]
        if not (0 < di < math.inf):
            continue
        delta = d.adversarials[i] - x[i]
        add("minimal", i, d.adversarials[i], None)
        for e in eps:
            if e >= di:
                add("eps", i, np.clip(x[i] + delta * np.float32(e / di), lo, hi), e)
    stack = np.stack([img for _, img in pending]).astype(np.float32)
    q = np.round((np.clip(stack, lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)
    pred = clf.predict(stack).numpy()
    pred_png = clf.predict(q.astype(np.float32) / 255 * (hi - lo) + lo).numpy()
    items: dict[str, dict] = {}
    dropped = 0
    order = np.random.default_rng(secrets.randbits(64)).permutation(len(pending))
    for j in order:  # file and manifest order carry no hint of the kind
        meta, _ = pending[j]
        if meta["kind"] == "eps" and pred[j] == meta["label"]:
            dropped += 1  # clipping brought it back to the true class: not an adversarial
            continue
        iid = secrets.token_hex(8)
        Image.fromarray(to_image(q[j])).save(images / f"{iid}.png", optimize=False)
        items[iid] = {**meta, "model_prediction": int(pred[j]),
                      "png_prediction": int(pred_png[j])}
    classes = data.classes or tuple(str(c) for c in range(int(clf.num_classes or y.max() + 1)))
    points = [{"index": int(idx[i]), "label": int(y[i]), "prediction": int(d.predictions[i]),
               "distance": None if math.isinf(d.distances[i]) else float(d.distances[i])}
              for i in range(idx.size)]
    curve_d = np.asarray(curve.distances)[:idx.size]
    manifest = {
        "format": FORMAT, "version": 1, "id": secrets.token_hex(8), "norm": norm_name(curve.norm),
        "name": curve.name, "classes": list(classes), "eps": list(eps), "bounds": [lo, hi],
        "settings": {**(settings or {}), "attack": attack, "seed": seed, "n": int(idx.size),
                     "data": data.name, "eps_dropped_not_adversarial": dropped,
                     "points_where_curve_distance_differs": int(np.sum(
                         ~np.isclose(curve_d, d.distances, rtol=1e-4, atol=1e-7)
                         & ~(np.isinf(curve_d) & np.isinf(d.distances))))},
        "points": points, "items": items}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return Session.load(out)
