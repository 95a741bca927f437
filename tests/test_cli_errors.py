"""The command line refuses bad input before any work, in one line naming the value, shows
tracebacks only for bugs, sets threads, and keeps a folder's summary complete."""

import json

import numpy as np
import pytest
import torch

import robcurves
from robcurves.cli import main


def _export(tmp_path, dynamic=True, features=64, name="net.pt2", seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(features, 10)).eval()
    x = torch.rand(2 if dynamic else 1, 1, 8, 8) if features == 64 else torch.rand(2, features)
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    path = tmp_path / name
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=shapes), str(path))
    return path


def _curve(tmp_path, model, *extra, out="o"):
    return main(["curve", "--model", str(model), "--data", "digits", "--n", "12", "--out",
                 str(tmp_path / out), "--no-progress", *extra])


def _err(capsys):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err


def test_bad_eps_is_refused_before_any_output(tmp_path, capsys):
    model = _export(tmp_path)
    assert _curve(tmp_path, model, "--eps", "abc") == 2
    assert "cannot read eps 'abc'" in _err(capsys)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra, message", [
    (["--attack", "fmn", "--budget", "100"],
     "--budget is not taken by --attack fmn; attacks that take --budget: auto"),
    (["--attack", "fmn", "--attack-opt", "sweep=false"], "attack 'fmn' takes no option 'sweep'"),
    (["--attack", "nope"], "unknown attack 'nope'"),
    (["--attack-opt", "restarts=-1"], "auto: restarts must be an integer >= 0; got -1"),
    (["--attack-opt", "sweep=maybe"], "auto: sweep must be true or false (or None); got 'maybe'"),
    (["--attack", "fmn", "--attack-opt", "steps=0"], "fmn: steps must be an integer >= 1; got 0"),
    (["--attack-opt", "seed=3"], "--attack-opt seed=3: the seed is set with --seed"),
    (["--budget", "300", "--attack-opt", "budget=200"],
     "--attack-opt budget=200: the budget is set with --budget"),
    (["--batch-size", "0"], "--batch-size must be > 0; got 0"),
    (["--mean", "0.5,x"], "--mean: cannot read 'x' as a number"),
    (["--mean", "0.5,0.5"], "--mean has 2 values; the data has 1 channel"),
    (["--threads", "0"], "--threads must be a whole number >= 1; got 0"),
])
def test_bad_curve_options_are_refused_before_any_output(tmp_path, capsys, extra, message):
    model = _export(tmp_path)
    assert _curve(tmp_path, model, *extra) == 2
    assert message in _err(capsys)
    assert not (tmp_path / "o").exists()


def test_a_model_that_does_not_fit_the_data_is_one_line_naming_the_file(tmp_path, capsys):
    model = _export(tmp_path, features=10, name="wrong.pt2")
    assert _curve(tmp_path, model) == 2
    err = _err(capsys)
    assert str(model) in err and "fails on inputs of shape (1, 8, 8)" in err
    assert not (tmp_path / "o").exists()


def test_a_pt2_with_a_static_batch_says_how_to_export_a_dynamic_one(tmp_path, capsys):
    model = _export(tmp_path, dynamic=False, name="static.pt2")
    assert _curve(tmp_path, model) == 2
    err = _err(capsys)
    assert str(model) in err and "fixed batch size" in err
    assert "dynamic_shapes=({0: torch.export.Dim('batch')},)" in err


def test_library_keywords_in_messages_are_spelled_as_cli_options(tmp_path, capsys):
    model = _export(tmp_path)
    assert _curve(tmp_path, model, "--norms", "inf", "--budget", "10", "--attack-opt",
                  "restarts=2") == 2
    err = _err(capsys)
    assert "--attack-opt sweep=false" in err and "sweep=False" not in err
    assert "fewer --attack-opt restarts=N" in err
    assert _curve(tmp_path, model, "--norms", "inf", out="a") == 0
    assert main(["curve", "--model", str(model), "--data", "digits", "--n", "8", "--norms",
                 "inf", "--out", str(tmp_path / "b"), "--no-progress", "--name", "b"]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a" / "curve-linf.json"),
                 str(tmp_path / "b" / "curve-linf.json"), "--out", str(tmp_path / "r")]) == 2
    err = _err(capsys)
    assert "pass --intersect" in err and "intersect=True" not in err


def test_curve_file_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "robcurves-curve", "version": 1, "n": 1}))
    assert main(["plot", str(bad), "--out", str(tmp_path / "p.png")]) == 2
    assert f"curve file {str(bad)!r}: missing field 'distances'" in _err(capsys)
    c = robcurves.RobustnessCurve(np.array([0.1, 0.2]), norm="inf", name="m").to_dict()
    c["distances"] = [0.1, -1.0]
    bad.write_text(json.dumps(c))
    assert main(["compare", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = _err(capsys)
    assert str(bad) in err and "distances must be >= 0" in err


def test_adding_a_norm_to_a_folder_summarises_every_curve_in_it(tmp_path, capsys):
    from PIL import Image

    model = _export(tmp_path)
    assert _curve(tmp_path, model, "--norms", "inf") == 0
    capsys.readouterr()
    assert _curve(tmp_path, model, "--norms", "1") == 0
    printed = capsys.readouterr().out
    assert "[linf]" in printed and "[l1]" in printed
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert set(run["seconds"]) == {"linf", "l1"}
    assert run["curves"] == ["curve-linf.json", "curve-l1.json"]
    assert [c["norms"] for c in run["commands"]] == ["inf", "1"]
    one_panel = 4.5 * 150
    assert Image.open(tmp_path / "o" / "curves.png").size[0] >= 2 * one_panel - 10


def test_a_folder_of_another_model_is_refused_before_any_work(tmp_path, capsys):
    assert _curve(tmp_path, _export(tmp_path), "--norms", "inf") == 0
    other = _export(tmp_path, name="other.pt2", seed=1)
    capsys.readouterr()
    assert _curve(tmp_path, other, "--norms", "1") == 2
    assert "already holds curve-linf.json of another model" in _err(capsys)
    assert not (tmp_path / "o" / "work" / "l1").exists()


def test_threads_are_recorded_and_a_resume_with_other_threads_is_refused(tmp_path, capsys):
    model = _export(tmp_path)
    assert _curve(tmp_path, model, "--norms", "inf", "--threads", "2") == 0
    c = robcurves.RobustnessCurve.load(tmp_path / "o" / "curve-linf.json")
    assert c.metadata["settings"]["threads"] == 2
    assert torch.get_num_threads() == 1  # the command restores the count it found
    capsys.readouterr()
    assert _curve(tmp_path, model, "--norms", "inf") == 2
    assert "computed with --threads 2; resume it with --threads 2" in _err(capsys)


def test_an_import_error_inside_load_model_is_not_reported_as_a_wrong_file(tmp_path,
                                                                          monkeypatch):
    import robcurves.train as rtrain

    def broken(path):
        raise ImportError("cannot import name 'x' from 'robcurves.internal'")

    monkeypatch.setattr(rtrain, "is_model_file", lambda path: True)
    monkeypatch.setattr(rtrain, "load_model", broken)
    model = _export(tmp_path)
    with pytest.raises(ImportError, match="cannot import name 'x'"):
        _curve(tmp_path, model)


def test_internal_bugs_show_their_traceback_and_bad_input_does_not(monkeypatch, capsys):
    import robcurves.cli.plot as plot

    def bug(args):
        raise TypeError("internal bug")

    monkeypatch.setattr(plot, "run", bug)
    with pytest.raises(TypeError, match="internal bug"):
        main(["plot", "x.json"])

    def missing_dep(args):
        raise ImportError("robcurves needs 'jax' for JAX models") from ModuleNotFoundError(
            "No module named 'jax'", name="jax")

    monkeypatch.setattr(plot, "run", missing_dep)
    assert main(["plot", "x.json"]) == 2
    assert "robcurves needs 'jax'" in capsys.readouterr().err


def test_an_interrupted_train_says_epochs_are_checkpointed(tmp_path, monkeypatch, capsys):
    import robcurves.train as rtrain

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(rtrain, "fit", interrupted)
    assert main(["train", "--data", "digits", "--out", str(tmp_path / "m.rcm")]) == 130
    err = capsys.readouterr().err
    assert "finished epochs are saved in the checkpoint" in err and "batches" not in err


def test_curve_help_lists_every_model_format(capsys):
    with pytest.raises(SystemExit):
        main(["curve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for fmt in ("Keras", "ONNX", "scikit-learn", "TorchScript", ".pt2", "--threads"):
        assert fmt in text


@pytest.mark.parametrize("method, kwargs, shown", [
    ("standard", {}, False),                 # nothing is attacked: no eps on the bar
    ("pgd-at", {"warmup": 1.0}, True),       # the warm-up's fraction of eps
])
def test_the_training_bar_shows_eps_only_for_a_warm_up(capsys, method, kwargs, shown):
    ds = robcurves.data.load("digits").subset(slice(0, 64))
    robcurves.train.fit(ds, arch="mlp", method=method, epochs=1, batch_size=32, steps=1,
                        eval_points=4, eval_steps=1, progress=True, **kwargs)
    err = capsys.readouterr().err
    assert "loss=" in err
    assert ("eps" in err) == shown


@pytest.mark.parametrize("argv, message", [
    (["plot", "missing.json", "--eps", "abc"], "cannot read eps 'abc'"),
    (["compare", "missing.json", "--out", "r", "--level", "2"], "--level must lie in (0, 1)"),
    (["compare", "missing.json", "--out", "r", "--eps-max", "x"], "cannot read eps 'x'"),
    (["scale", "digits", "--block-size", "0"], "--block-size must be > 0"),
    (["train", "--data", "digits", "--eps", "abc", "--out", "m.rcm"], "cannot read eps 'abc'"),
    (["train", "--data", "digits", "--epochs", "0", "--out", "m.rcm"], "--epochs must be > 0"),
    (["zoo", "--out", "z", "--models", "st,nope"], "--models 'st,nope': unknown nope"),
    (["demo", "--n", "0"], "--n must be > 0"),
])
def test_every_command_checks_its_arguments_before_loading_anything(argv, message, monkeypatch,
                                                                   capsys, tmp_path):
    import robcurves.data as rdata

    def no_load(*a, **k):
        raise AssertionError("data loaded before the arguments were checked")

    monkeypatch.setattr(rdata, "load", no_load)
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in _err(capsys)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bounds_option_is_one_parser_for_curve_and_eval() -> None:
    import math

    from robcurves.cli._common import parse_bounds
    from robcurves.cli.curve import add_parser as curve_parser
    from robcurves.cli.eval import add_parser as eval_parser

    assert parse_bounds(None) is None  # the data set's own bounds
    assert parse_bounds("none") == (-math.inf, math.inf)
    assert parse_bounds("-1,1") == (-1.0, 1.0)
    for bad in ("1,0", "0", "0,1,2"):
        with pytest.raises(ValueError, match="--bounds must be two numbers low,high"):
            parse_bounds(bad)
    import argparse

    for add in (curve_parser, eval_parser):  # both default to the data set's bounds
        sub = argparse.ArgumentParser().add_subparsers()
        assert add(sub).get_default("bounds") is None


def test_python_dash_m_runs_the_command_line(tmp_path):
    """``python -m robcurves`` is the ``robcurves`` command: same version, same refusals (exit
    status 2, the bad value named)."""
    import subprocess
    import sys

    import robcurves

    run = [sys.executable, "-m", "robcurves"]
    out = subprocess.run([*run, "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and robcurves.__version__ in out.stdout + out.stderr
    bad = subprocess.run([*run, "scale", "digits", "--device", "cuda:3", "--out",
                          str(tmp_path / "s")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "device 'cuda:3' is not available" in bad.stderr
    assert not (tmp_path / "s").exists()
