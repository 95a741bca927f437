"""Would a person still see the original class? Human-validated robustness curves.

From the labels of a labelling session (:mod:`robcurves.labels`) and a curve of the same points:

- **control accuracy**: the share of labelled clean images people give their true class;
- per chosen eps, the **share of adversarials people still label as the original class**, among
  the labelled adversarials stretched to that eps;
- the **human-validated curve**: a point counts as broken at eps only when d* <= eps *and* its
  minimal adversarial is still seen as its original class. A point whose minimal adversarial
  people see as another class (or cannot tell) gets d = +inf (not a valid break). A point whose
  minimal adversarial has no label is **kept as a break** (its curve distance stays), so the
  validated curve is the plain one wherever nobody looked; ``n_unlabelled`` counts them. A point
  the model misclassifies (d* = 0) has the clean image as its adversarial, so the clean image's
  labels decide it;
- the **eps from which most adversarials change class for people**: the smallest chosen eps
  from which on (at it and every larger chosen eps with labels) fewer than half of the labelled
  stretched adversarials keep the original class; None when there is no such eps.

One image may have answers from several people: an image "keeps the original class" when more
than half of its answers name that class ("cannot tell" counts against), so with one annotator
it is their answer. Every share above is over images, not over answers.

A :class:`HumanStudy` is saved as ``human.json`` (:meth:`HumanStudy.write`, with the plain curve
in it) and read back with :meth:`HumanStudy.load`; the comparison report takes it as a section
(``build_report(..., human=[study])``, ``robcurves compare ... --human human.json``).
"""

from __future__ import annotations

import base64
import json
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..curve import RobustnessCurve
from ..labels.session import Session

__all__ = ["HumanStudy", "human_study"]

#: the ``format`` field of ``human.json``
HUMAN_FORMAT = "robcurves-human-study"


@dataclass(frozen=True)
class HumanStudy:
    """Results of :func:`human_study`.

    Attributes:
        curve: the plain curve; validated: the human-validated curve (same points).
        eps: the session's chosen eps; kept_share[k]: share of the labelled adversarials at
            ``eps[k]`` people still label as the original class (None without labels);
            n_labelled[k]: their number; n_images[k]: adversarial images at that eps.
        control_accuracy: share of labelled clean images given their true class (None without
            labels); n_controls: labelled clean images.
        minimal_kept_share: the same share over the labelled minimal adversarials;
            n_minimal_labelled: their number.
        n_broken: points with a finite d*; n_valid: of those, kept as valid by the labels;
            n_changed: no longer seen as their class (removed from the breaks);
            n_unlabelled: minimal adversarial without a label (kept as breaks).
        changes_from: the eps from which most adversarials change class for people, or None.
        n_labels: answers (rows of the label file) behind the study; n_annotators: distinct
            annotator names among them.
    """

    curve: RobustnessCurve
    validated: RobustnessCurve
    eps: tuple[float, ...]
    kept_share: tuple[float | None, ...]
    n_labelled: tuple[int, ...]
    n_images: tuple[int, ...]
    control_accuracy: float | None
    n_controls: int
    minimal_kept_share: float | None
    n_minimal_labelled: int
    n_broken: int
    n_valid: int
    n_changed: int
    n_unlabelled: int
    changes_from: float | None
    n_labels: int = 0
    n_annotators: int = 0

    def summary(self, fmt: Callable[[float], str] | None = None) -> list[str]:
        """The findings in sentences; ``fmt`` prints an eps (default 4 significant digits)."""
        fmt = fmt or _fmt4

        def pct(v):
            return ("no labels" if v is None else f"{100 * v:.0f}%")
        out = [f"{self.n_labels} label{'' if self.n_labels == 1 else 's'} from "
               f"{self.n_annotators} annotator{'' if self.n_annotators == 1 else 's'}",
               f"control accuracy of people on clean images: {pct(self.control_accuracy)} "
               f"({self.n_controls} labelled)",
               f"minimal adversarials still seen as their class: "
               f"{pct(self.minimal_kept_share)} ({self.n_minimal_labelled} labelled)"]
        for e, s, k in zip(self.eps, self.kept_share, self.n_labelled, strict=True):
            out.append(f"adversarials at eps {fmt(e)} still seen as their class: {pct(s)} "
                       f"({k} labelled)")
        out.append(f"of {self.n_broken} broken points {self.n_valid} are valid breaks, "
                   f"{self.n_changed} change class for people (not counted as breaks), "
                   f"{self.n_unlabelled} have no label (kept as breaks)")
        out.append("most adversarials change class for people from eps "
                   f"{fmt(self.changes_from)} on" if self.changes_from is not None else
                   "at no chosen eps do most labelled adversarials change class for people")
        return out

    def figure(self):
        """The plain and the validated curve; the kept shares per eps. A matplotlib ``Figure``
        not attached to pyplot (the comparison report draws it too)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 3.8))
        a, b = fig.subplots(1, 2)
        finite = self.curve.distances[np.isfinite(self.curve.distances)]
        eps_max = max([*self.eps, float(finite.max()) if finite.size else 1.0]) * 1.1
        self.curve.plot(ax=a, eps_max=eps_max, label=f"{self.curve.name} (attack)")
        self.validated.plot(ax=a, eps_max=eps_max, label="human-validated", linestyle="--")
        a.set_ylabel("robust error")
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
        have = [(e, s) for e, s in zip(self.eps, self.kept_share, strict=True) if s is not None]
        if have:
            b.plot(*zip(*have, strict=True), marker="o")
        b.axhline(0.5, color="0.5", linestyle=":", linewidth=0.8)
        b.set_ylim(-0.03, 1.03)
        b.set_xlabel(f"eps ({self.curve.norm_name})")
        b.set_ylabel("adversarials still seen as their class")
        b.grid(alpha=0.3)
        fig.tight_layout()
        return fig

    def table_rows(self, fmt: Callable[[float], str] | None = None) -> list[dict[str, str]]:
        """One row per chosen eps: ``eps``, ``share`` (still seen as their class; "–" without
        labels), ``labelled`` and ``images``, as text; ``fmt`` prints an eps."""
        fmt = fmt or _fmt4
        return [{"eps": fmt(e), "share": "–" if s is None else f"{100 * s:.0f}%",
                 "labelled": str(k), "images": str(m)}
                for e, s, k, m in zip(self.eps, self.kept_share, self.n_labelled,
                                      self.n_images, strict=True)]

    def to_dict(self) -> dict:
        """JSON-ready data, the plain curve included; :meth:`from_dict` reads it."""
        def fin(v):
            return (None if v is None or math.isinf(v) else float(v))
        meta = self.validated.metadata.get("human_validated") or {}
        return {"format": HUMAN_FORMAT, "version": 1, "session": meta.get("session"),
                "n_labels": self.n_labels, "n_annotators": self.n_annotators,
                "curve": self.curve.to_dict(), "eps": list(self.eps),
                "kept_share": list(self.kept_share),
                "n_labelled": list(self.n_labelled), "n_images": list(self.n_images),
                "control_accuracy": self.control_accuracy, "n_controls": self.n_controls,
                "minimal_kept_share": self.minimal_kept_share,
                "n_minimal_labelled": self.n_minimal_labelled, "n_broken": self.n_broken,
                "n_valid": self.n_valid, "n_changed": self.n_changed,
                "n_unlabelled": self.n_unlabelled, "changes_from": self.changes_from,
                "validated_distances": [fin(v) for v in self.validated.distances]}

    @classmethod
    def from_dict(cls, obj: dict, origin: str = "<dict>") -> HumanStudy:
        """Read what :meth:`to_dict` wrote; a clear error on anything else."""
        if not isinstance(obj, dict) or obj.get("format") != HUMAN_FORMAT:
            raise ValueError(f"{origin} is not a human study (expected format {HUMAN_FORMAT!r}, "
                             "as `robcurves label study` writes in human.json)")
        if obj.get("version") != 1:
            raise ValueError(f"{origin} has human-study format version {obj.get('version')!r}; "
                             "this robcurves reads version 1")
        curve = RobustnessCurve.from_dict(obj["curve"], origin)
        validated = np.array([math.inf if v is None else v for v in obj["validated_distances"]],
                             dtype=np.float64)
        if validated.shape != curve.distances.shape:
            raise ValueError(f"{origin}: {validated.size} validated distances for a curve of "
                             f"{curve.n} points")
        return cls(curve=curve,
                   validated=_validated_curve(curve, validated, obj["session"],
                                              int(obj["n_unlabelled"]), int(obj["n_changed"])),
                   eps=tuple(float(e) for e in obj["eps"]), kept_share=tuple(obj["kept_share"]),
                   n_labelled=tuple(obj["n_labelled"]), n_images=tuple(obj["n_images"]),
                   control_accuracy=obj["control_accuracy"], n_controls=obj["n_controls"],
                   minimal_kept_share=obj["minimal_kept_share"],
                   n_minimal_labelled=obj["n_minimal_labelled"], n_broken=obj["n_broken"],
                   n_valid=obj["n_valid"], n_changed=obj["n_changed"],
                   n_unlabelled=obj["n_unlabelled"], changes_from=obj["changes_from"],
                   n_labels=obj["n_labels"], n_annotators=obj["n_annotators"])

    @classmethod
    def load(cls, path: str | Path) -> HumanStudy:
        """Read ``human.json`` (written by :meth:`write`)."""
        from ..results import read_json_file

        obj = read_json_file(path, "human study file")
        return cls.from_dict(obj, origin=str(path))

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """``human.png``, ``human.json`` and the page ``human.html`` in ``out_dir``."""
        import io

        from ..report.render import render

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        fig = self.figure()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        paths = {"png": out / "human.png", "json": out / "human.json",
                 "html": out / "human.html"}
        paths["png"].write_bytes(buf.getvalue())
        paths["json"].write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False))
        rows = self.table_rows()
        paths["html"].write_text(render("human.html.j2", study=self, summary=self.summary(),
                                        rows=rows,
                                        figure=base64.b64encode(buf.getvalue()).decode()))
        return paths


def _fmt4(eps: float) -> str:
    return f"{eps:.4g}"


def _validated_curve(curve: RobustnessCurve, validated: np.ndarray, session: str | None,
                     n_unlabelled: int, n_changed: int) -> RobustnessCurve:
    """The human-validated curve: ``validated`` distances on the points of ``curve``."""
    return RobustnessCurve(
        validated, norm=curve.norm, name=f"{curve.name} (human-validated)",
        indices=curve.indices, labels=curve.labels,
        metadata={"human_validated": {"session": session, "n_unlabelled_kept": n_unlabelled,
                                      "n_changed_removed": n_changed}})


def _kept(answers: Sequence[int], label: int) -> bool:
    return sum(a == label for a in answers) * 2 > len(answers)


def human_study(labels: Sequence[dict], session: Session,
                curve: RobustnessCurve | None = None) -> HumanStudy:
    """Human-validated curve and shares from ``labels`` (rows as
    :func:`robcurves.labels.read_labels` returns them) of ``session``.

    ``curve`` (default: the curve of the session's own distances) must be of the session's
    norm; its points are matched to the session's by data set index (``curve.indices``), and
    points the session does not hold count as unlabelled.
    """
    labels = list(labels)
    answers: dict[str, list[int]] = defaultdict(list)
    for row in labels:
        if row["image"] not in session.items:
            raise ValueError(f"label of unknown image {row['image']!r}: are these the labels "
                             f"of session {session.path}?")
        answers[row["image"]].append(int(row["answer"]))
    if curve is None:
        pts = session.points
        curve = RobustnessCurve(
            np.array([p["distance"] for p in pts], dtype=np.float64), norm=session.norm,
            name=session.name, indices=np.array([p["index"] for p in pts]),
            labels=np.array([p["label"] for p in pts]))
    elif curve.norm != session.norm:
        raise ValueError(f"the curve is in {curve.norm_name}, the session in norm "
                         f"{session.norm}; give the curve of the session's norm")
    by_kind: dict[tuple[str, int], str] = {}
    for iid, item in session.items.items():
        if item["kind"] in ("clean", "minimal"):
            by_kind[(item["kind"], item["point"])] = iid

    def kept_of(iid: str) -> bool | None:
        a = answers.get(iid)
        return None if not a else _kept(a, session.items[iid]["label"])

    d = np.array(curve.distances, dtype=np.float64)
    idx = np.arange(d.size) if curve.indices is None else np.asarray(curve.indices)
    validated = d.copy()
    n_valid = n_changed = n_unlabelled = 0
    for i in np.flatnonzero(np.isfinite(d)):
        iid = by_kind.get(("clean" if d[i] == 0 else "minimal", int(idx[i])))
        k = None if iid is None else kept_of(iid)
        if k is None:
            n_unlabelled += 1
        elif k:
            n_valid += 1
        else:
            n_changed += 1
            validated[i] = math.inf

    def share(kind: str, eps: float | None = None) -> tuple[float | None, int, int]:
        ids = [i for i, it in session.items.items()
               if it["kind"] == kind and (eps is None or it["eps"] == eps)]
        ks = [k for k in map(kept_of, ids) if k is not None]
        return (sum(ks) / len(ks) if ks else None), len(ks), len(ids)

    per_eps = [share("eps", e) for e in session.eps]
    changes_from = None
    for k in range(len(session.eps) - 1, -1, -1):  # from the largest eps down
        s = per_eps[k][0]
        if s is None:
            continue
        if s < 0.5:
            changes_from = session.eps[k]
        else:
            break
    control, n_controls, _ = share("clean")
    minimal, n_min, _ = share("minimal")
    vcurve = _validated_curve(curve, validated, session.id, n_unlabelled, n_changed)
    return HumanStudy(curve=curve, validated=vcurve, eps=tuple(session.eps),
                      kept_share=tuple(p[0] for p in per_eps),
                      n_labelled=tuple(p[1] for p in per_eps),
                      n_images=tuple(p[2] for p in per_eps), control_accuracy=control,
                      n_controls=n_controls, minimal_kept_share=minimal,
                      n_minimal_labelled=n_min, n_broken=int(np.isfinite(d).sum()),
                      n_valid=n_valid, n_changed=n_changed, n_unlabelled=n_unlabelled,
                      changes_from=changes_from, n_labels=len(labels),
                      n_annotators=len({str(r["annotator"]) for r in labels}))
