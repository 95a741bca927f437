"""One form for norms: the float p on every ``.norm`` attribute, any NormLike spelling on input,
the names linf/l2/l1 in reprs, labels and files; and a public namespace that holds it all."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

import robcurves
import robcurves.train as rtrain
from robcurves.diagnostics import detect_kink
from robcurves.train import ThreatModel

SPELLINGS = {math.inf: ["inf", "linf", "L_INF", math.inf], 2.0: ["l2", "2", 2, 2.0],
             1.0: ["l1", "1", 1]}


@pytest.mark.parametrize("p", list(SPELLINGS))
def test_every_norm_attribute_is_the_float_and_names_are_canonical(p):
    name = {math.inf: "linf", 2.0: "l2", 1.0: "l1"}[p]
    for spelling in SPELLINGS[p]:
        d = robcurves.Distances([0.5, math.inf], [0, 1], [0, 1], [0, 1], spelling, "m")
        c = robcurves.RobustnessCurve.from_distances(d)
        tm = ThreatModel(spelling, 0.25)
        for obj in (d, c, tm):
            assert obj.norm == p and isinstance(obj.norm, float) and obj.norm_name == name
        assert f"norm='{name}'" in repr(d) and f"norm='{name}'" in repr(c)
        cmp = robcurves.compare([c, robcurves.RobustnessCurve.from_distances(d, name="m2")],
                                n_boot=20)
        assert cmp.norm == p and f"norm='{name}'" in repr(cmp)
        assert tm.label == f"{name}@0.25" and tm.as_dict()["norm"] == name
    assert ("sparsity" in ThreatModel(p, 0.1).as_dict()) == (p == 1.0)


def test_kink_norm_is_the_curve_norm():
    rng = np.random.default_rng(0)
    # a curve with a sharp rise just after its training eps 0.3
    d = np.concatenate([rng.uniform(0, 1, 300), 0.3 + rng.uniform(0, 0.02, 300)])
    c = robcurves.RobustnessCurve(d, "l2", name="at", metadata={"model": {"train_eps": 0.3}})
    k = detect_kink(c)
    assert k.norm == 2.0 and k.norm_name == "l2" and k.detected


def test_curve_files_keep_writing_norm_names(tmp_path):
    c = robcurves.RobustnessCurve([0.1, 0.2], math.inf)
    path = c.save(tmp_path / "c.json")
    assert '"norm": "linf"' in path.read_text()
    assert robcurves.RobustnessCurve.load(path).norm == math.inf


def test_public_api_is_complete_and_resolves():
    for name in ["Comparison", "InterclassDistances", "NormLike", "Bounds", "build_report",
                 "write_report", "train", "wrap", "distances", "certify", "compare"]:
        assert name in robcurves.__all__, name
    for name in robcurves.__all__:
        assert getattr(robcurves, name) is not None, name
    assert robcurves.train.fit is importlib.import_module("robcurves.train.loop").fit
    # every public name of the training modules is reachable from robcurves.train
    for mod in ("archs", "io", "loop", "methods", "zoo"):
        m = importlib.import_module(f"robcurves.train.{mod}")
        missing = [n for n in m.__all__ if n not in rtrain.__all__]
        assert not missing, (mod, missing)
    for name in rtrain.__all__:
        assert getattr(rtrain, name) is not None, name
