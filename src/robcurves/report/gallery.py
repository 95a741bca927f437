"""A gallery of minimal adversarial examples (the paper's Fig. 7).

:func:`gallery` computes minimal adversarials with :func:`robcurves.distances` and draws, per
shown point, three images in one column: the clean input, the perturbation (scaled to be
visible: mid-grey is zero, the largest absolute entry of that perturbation is black or white;
the factor is printed), and the adversarial; the titles give the point's minimal distance d*,
the true label and the model's predictions on the clean and the adversarial input.
:func:`save_gallery` writes it as an image file; ``robcurves gallery`` is the command.

Which points are shown: among the points the model classifies correctly and the attack broke,
``n`` at evenly spaced ranks of d* (the smallest, the largest and the ones between), so the
gallery shows what small and large minimal perturbations look like.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._norms import norm_name, parse_norm

__all__ = ["gallery", "save_gallery", "to_image", "pick_points"]


def to_image(x: np.ndarray) -> np.ndarray:
    """One input ``(C, H, W)`` with C in {1, 3} as an ``(H, W)`` or ``(H, W, 3)`` array (values
    unchanged). Anything else is refused: the gallery and the labelling page need images."""
    a = np.asarray(x)
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise ValueError(f"expected an image of shape (C, H, W) with C = 1 or 3; got shape "
                         f"{a.shape} (vector data has no picture to show)")
    return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))


def pick_points(distances: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                n: int) -> np.ndarray:
    """Positions of ``n`` points at evenly spaced ranks of d* among the correctly classified
    points with a finite distance (fewer if there are fewer such points), smallest d* first."""
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    d = np.asarray(distances, dtype=np.float64)
    ok = np.flatnonzero((np.asarray(predictions) == np.asarray(labels)) & np.isfinite(d)
                        & (d > 0))
    if ok.size == 0:
        return ok
    order = ok[np.argsort(d[ok], kind="stable")]
    ranks = np.unique(np.round(np.linspace(0, order.size - 1, min(n, order.size))).astype(int))
    return order[ranks]


def gallery(model, x: np.ndarray, y: np.ndarray, norm: object = "inf", *, n: int = 8,
            classes: Sequence[str] | None = None, attack: str = "auto", seed: int = 0,
            title: str | None = None, **attack_kwargs):
    """Minimal adversarials of ``model`` on ``(x, y)`` in ``norm``, drawn for ``n`` points.

    Args:
        model: a wrapped classifier or ``torch.nn.Module`` (as for :func:`robcurves.distances`).
        x, y: images ``(N, C, H, W)`` (C = 1 or 3) in the model's bounds and their labels; all
            N points are attacked and ``n`` of them shown (see :func:`pick_points`).
        norm: ``"inf"``, ``2`` or ``1`` (any spelling :func:`robcurves.distances` takes).
        classes: class names for the titles (default: the class indices).
        attack, seed, **attack_kwargs: passed to :func:`robcurves.distances`.
        title: figure title (default: the norm and the number of points attacked).

    Returns:
        a matplotlib ``Figure`` with 3 rows (clean, perturbation, adversarial) and one column
        per shown point. Raises ``ValueError`` when no point was both correctly classified and
        broken.
    """
    import matplotlib.pyplot as plt

    from ..evaluate import distances

    x = np.asarray(x, dtype=np.float32)
    to_image(x[0])  # refuse non-images before any attack runs
    p = parse_norm(norm)
    d = distances(model, x, y, p, attack=attack, seed=seed, return_adversarials=True,
                  **attack_kwargs)
    shown = pick_points(d.distances, d.labels, d.predictions, n)
    if shown.size == 0:
        raise ValueError(f"no point of {len(d.labels)} is both correctly classified and broken "
                         f"in {norm_name(p)}; nothing to show")
    adv = d.adversarials[shown]
    adv_pred = _predict(model, adv)
    name = (lambda c: str(classes[c])) if classes is not None else str
    fig, axes = plt.subplots(3, shown.size, figsize=(1.55 * shown.size + 0.9, 5.0),
                             squeeze=False)
    gray = x.shape[1] == 1
    for j, i in enumerate(shown):
        delta = adv[j] - x[i]
        scale = float(np.abs(delta).max())
        vis = 0.5 + delta / (2 * scale) if scale > 0 else np.full_like(delta, 0.5)
        rows = [(x[i], f"y={name(d.labels[i])}, f={name(d.predictions[i])}"),
                (vis, f"d*={d.distances[i]:.3g}\n(x{1 / (2 * scale):.3g})" if scale > 0
                 else "d*=0"),
                (adv[j], f"f={name(adv_pred[j])}")]
        for r, (img, label) in enumerate(rows):
            ax = axes[r, j]
            ax.imshow(np.clip(to_image(img), 0, 1), cmap="gray" if gray else None, vmin=0,
                      vmax=1, interpolation="nearest")
            ax.set_title(label, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    for r, label in enumerate(("clean", "perturbation", "adversarial")):
        axes[r, 0].set_ylabel(label, fontsize=9)
    fig.suptitle(title or f"minimal {norm_name(p)} adversarials ({shown.size} of "
                 f"{len(d.labels)} points, evenly spaced ranks of d*)", fontsize=10)
    fig.tight_layout()
    return fig


def save_gallery(path: str | Path, model, x: np.ndarray, y: np.ndarray, norm: object = "inf",
                 **kwargs) -> Path:
    """:func:`gallery` written to ``path`` (PNG, SVG or PDF by its suffix); returns the path."""
    import matplotlib.pyplot as plt

    fig = gallery(model, x, y, norm, **kwargs)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def _predict(model, x: np.ndarray) -> np.ndarray:
    """The model's predicted classes for raw inputs ``x``."""
    from ..model import wrap

    return wrap(model).predict(np.asarray(x, dtype=np.float32)).numpy()
