"""The robcurves command end to end: demo, curve on a torch.export model, clear errors."""

import json

import numpy as np
import pytest
import torch

import robcurves
from robcurves.cli import main


def test_demo_runs_end_to_end_and_reports_the_curves(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n", "60", "--epochs", "3", "--no-progress"]) == 0
    summary = (out / "summary.md").read_text()
    assert "## linf" in summary and "## l2" in summary
    assert (out / "demo.png").stat().st_size > 10_000
    curves = {p.stem: robcurves.RobustnessCurve.load(p) for p in out.glob("*.json")}
    assert set(curves) == {"standard-linf", "standard-l2", "pgd-at-linf", "pgd-at-l2"}
    held_out = np.sort(np.random.default_rng(0).permutation(1797)[:60])  # the demo's split
    for c in curves.values():
        assert c.n == 60 and c.n_unbroken == 0
        np.testing.assert_array_equal(c.indices, held_out)  # not points it trained on
        # the summary's table row is this curve's
        assert f"| {c.name} | {1 - c.clean_error:.3f} | {c.median_distance:.4g} | 0 |" in summary
    for norm in ("linf", "l2"):  # the crossings stated are those of the saved curves
        section = summary.split(f"## {norm}")[1].split("## ")[0]
        cmp = robcurves.compare([curves[f"standard-{norm}"], curves[f"pgd-at-{norm}"]],
                                n_boot=50)
        if cmp.crossings:
            assert "do not cross" not in section and f"{cmp.crossings[0].eps:.4g}" in section
        else:
            assert "- the curves do not cross" in section
    # the adversarially trained model has the larger median l_inf distance
    assert curves["pgd-at-linf"].median_distance > curves["standard-linf"].median_distance


def _export(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, 10)).eval()
    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(net, (torch.rand(2, 1, 8, 8),),
                                          dynamic_shapes=({0: torch.export.Dim("batch")},)),
                      str(path))
    return net, path


def test_curve_on_a_torch_export_model_matches_the_library(tmp_path, capsys):
    net, path = _export(tmp_path)
    assert main(["curve", "--model", str(path), "--data", "digits", "--n", "30", "--norms",
                 "inf,l1", "--out", str(tmp_path / "o"), "--eps", "0.05,0.1",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "robust error" in printed and "clean accuracy" in printed
    ds = robcurves.data.load("digits")
    for norm in ("linf", "l1"):
        c = robcurves.RobustnessCurve.load(tmp_path / "o" / f"curve-{norm}.json")
        d = robcurves.distances(net, ds.x[:30], ds.y[:30], norm, batch_size=256)
        np.testing.assert_allclose(c.distances, d.distances, rtol=1e-6)
        assert c.metadata["data"]["name"] == "digits"
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert set(run["seconds"]) == {"linf", "l1"}


@pytest.mark.parametrize("argv, message", [
    (["curve", "--model", "missing.pt", "--data", "digits", "--out", "x"], "missing.pt"),
    (["curve", "--model", "MODEL", "--data", "nope.npz", "--out", "x"], "nope.npz"),
    (["curve", "--model", "MODEL", "--data", "digits", "--norms", "l5", "--out", "x"],
     "unknown norm 'l5'"),
    (["curve", "--model", "MODEL", "--data", "digits", "--bounds", "0", "--out", "x"],
     "--bounds must be two numbers"),
    (["curve", "--model", "no_such_mod:make", "--data", "digits", "--out", "x"],
     "cannot import module 'no_such_mod'"),
    (["plot", "nothing.json"], "does not exist"),
])
def test_bad_command_lines_fail_with_a_clear_message(tmp_path, capsys, argv, message):
    _, path = _export(tmp_path)
    argv = [str(path) if a == "MODEL" else a for a in argv]
    argv = [str(tmp_path / a) if a == "x" else a for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
