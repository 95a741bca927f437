"""Every ```python and ```bash block of the README runs (issue 13.13).

Python blocks run in order in one namespace, with the README's placeholders filled in: the
user's model (``my_torch_module``, ``forest``) is a small model made here, ``/path/to/mnist``
and ``~/data`` are small copies of the shared data (the first points of each set, in the same
formats). Bash lines run in-process through ``robcurves.cli.main`` (``export`` and ``VAR=value``
prefixes set the environment); lines that install packages or take many minutes are listed in
:data:`SKIP` with the reason, and a listed line that no longer exists fails the test.
"""

from __future__ import annotations

import gzip
import io
import re
import shlex
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, SHARED_DATA

from robcurves.cli import main

README = ROOT / "README.md"
POINTS = 100  # points kept in each small data copy

# a substring of a bash line -> why that line is not run here
SKIP = {
    "pip install": "installs packages; CI runs the test command itself (and the demo is "
                   "test_cli.py's first test)",
    "benchmarks/attacks.py": "the attack benchmark, about 25 min",
    "benchmarks/exact_attacks.py": "attacks against MILP-exact distances, about 20 min",
    "benchmarks/interclass.py": "the inter-class benchmark, about 45 min",
    "robcurves zoo": "trains seven models, about 25 min on 2 cores",
    "robcurves study scaling": "trains 16 models, 6 CPU minutes (18 wall minutes on a "
                               "busy 2-core machine); test_scaling.py runs the command end to "
                               "end on digits",
    "robcurves study multi-perturbation": "trains six models on Fashion-MNIST: 8.4 min of CPU "
                                          "with --quick (45 min on the busy 2-core machine); "
                                          "test_study_multi.py runs the command end to end on "
                                          "digits",
    "robcurves label serve": "a server that runs until Ctrl-C; test_label.py serves the page and "
                             "labels it by keyboard in headless Chromium",
    "robcurves label export": "needs labels people gave on the page; test_label.py exports "
                              "labels typed in headless Chromium",
    "robcurves label study": "needs labels people gave on the page; test_label.py builds the "
                             "human-validated curve from labels typed in headless Chromium",
    "--human human/human.json": "needs the human.json of `robcurves label study` (skipped above); "
                                "test_report_sections.py runs compare --human end to end",
    "~/data/cifar-10-batches-py": "no CIFAR python batches here; test_data.py reads the "
                                  "format from files in the official layout",
    "~/data/GTSRB ": "no GTSRB Final_Test folder here; test_data.py covers the layout",
    "~/data/UCI_HAR_Dataset": "no UCI HAR here; test_data.py covers the format",
    "robcurves reproduce": "trains the paper's model families on every data set found (19 CPU "
                           "minutes with --quick, 49 wall minutes on the busy 2-core "
                           "machine); test_reproduce.py runs the "
                           "command end to end on small copies of Fashion-MNIST and MNIST",
    "ray start": "starts a Ray cluster node; tests/test_ray.py runs a local cluster",
    "--backend ray": "needs a running Ray cluster (--address auto); tests/test_ray.py runs the "
                     "same command on a local one",
}


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def _bash_lines() -> list[str]:
    lines = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append(line.strip())
    return lines


def _write_idx(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr, code in (("t10k-images-idx3-ubyte.gz", x, 3), ("t10k-labels-idx1-ubyte.gz",
                                                                   y, 1)):
        head = bytes([0, 0, 0x08, code]) + b"".join(
            int(d).to_bytes(4, "big") for d in arr.shape)
        (folder / name).write_bytes(gzip.compress(head + arr.astype(np.uint8).tobytes()))


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A home folder with ``data/`` holding small copies of the shared data sets."""
    from robcurves.data import load

    need = [SHARED_DATA / "mnist", SHARED_DATA / "fashion-mnist",
            SHARED_DATA / "gtsrb" / "gtsrb_test_32x32.npz",
            SHARED_DATA / "cifar10-jpeg" / "cifar10_test_jpg.tar.gz",
            SHARED_DATA / "tiny-imagenet-200" / "tiny-imagenet-200-val.tar"]
    missing = [str(p) for p in need if not p.exists()]
    if missing:
        pytest.skip(f"shared data not present: {missing}")
    home = tmp_path_factory.mktemp("home")
    data = home / "data"
    for name in ("mnist", "fashion-mnist"):
        ds = load(SHARED_DATA / name)
        _write_idx(data / name, np.rint(ds.x[:POINTS, 0] * 255), ds.y[:POINTS])
    with np.load(SHARED_DATA / "gtsrb" / "gtsrb_test_32x32.npz") as z:
        np.savez(data / "gtsrb_test_32x32.npz", x_test=z["x_test"][:POINTS],
                 y_test=z["y_test"][:POINTS])
    for src, mode in (("cifar10-jpeg/cifar10_test_jpg.tar.gz", "w:gz"),
                      ("tiny-imagenet-200/tiny-imagenet-200-val.tar", "w")):
        _small_tar(SHARED_DATA / src, data / Path(src).name, mode)
    return home


def _small_tar(src: Path, dst: Path, mode: str) -> None:
    """The non-image members and the first images (every class's first few) of an archive."""
    with tarfile.open(src) as tin, tarfile.open(dst, mode) as tout:
        members = [m for m in tin.getmembers() if m.isfile()]
        images = [m for m in members if m.name.lower().endswith((".jpg", ".jpeg", ".png"))]
        keep = {m.name for m in members if m not in images}
        per_class: dict[str, int] = {}
        for m in images:  # a few per class so every class has points
            c = str(Path(m.name).parent)
            if per_class.get(c, 0) < 3 or len(keep) < POINTS:
                per_class[c] = per_class.get(c, 0) + 1
                keep.add(m.name)
        ann = next((m for m in members if m.name.endswith("val_annotations.txt")), None)
        for m in members:
            if m.name not in keep:
                continue
            data = tin.extractfile(m).read()
            if ann is not None and m.name == ann.name:  # keep the rows of the kept images
                names = {Path(k).name for k in keep}
                data = "\n".join(r for r in data.decode().splitlines()
                                 if r.split("\t")[0] in names).encode() + b"\n"
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data))


def _mnist_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 10)).eval()


def _fixture_curves(folder: Path) -> None:
    """Two saved curves on the same points (the README's runs/pgd-at and runs/standard)."""
    from robcurves.curve import RobustnessCurve

    rng = np.random.default_rng(0)
    for name, scale in (("pgd-at", 0.12), ("standard", 0.05)):
        (folder / "runs" / name).mkdir(parents=True, exist_ok=True)
        RobustnessCurve(distances=rng.exponential(scale, 200), norm=np.inf, name=name,
                        indices=np.arange(200)).save(folder / "runs" / name / "curve-linf.json")


def test_every_bash_line_runs_or_is_listed_with_a_reason(home, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("ROBCURVES_DATA", raising=False)
    torch.jit.save(torch.jit.script(_mnist_model()), tmp_path / "model.pt")
    _fixture_curves(tmp_path)
    shutil.copytree(tmp_path / "runs" / "standard", tmp_path / "runs" / "m2")  # a second run
    lines = _bash_lines()
    used = set()
    ran = 0
    for line in lines:
        skip = [k for k in SKIP if k in line]
        if skip:
            used.update(skip)
            continue
        line = line.replace("/path/to/mnist", str(home / "data" / "mnist"))
        words = [str(Path(w).expanduser()) if w.startswith("~") else w
                 for w in shlex.split(line, comments=True)]
        env = {}
        if words[0] == "export":
            for w in words[1:]:
                k, _, v = w.partition("=")
                monkeypatch.setenv(k, str(Path(v).expanduser()))
            continue
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            k, _, v = words.pop(0).partition("=")
            env[k] = v
        assert words[0] == "robcurves", (f"README line {line!r} is neither a robcurves command "
                                         "nor listed in SKIP with a reason")
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            argv = [*words[1:], *(["--no-progress"] if words[1] in (
                "curve", "train", "scale") else [])]
            assert main(argv) == 0, f"README line failed: {line}"
        ran += 1
    stale = sorted(set(SKIP) - used)
    assert not stale, f"SKIP lists lines the README no longer has: {stale}"
    assert ran >= 10
    held = (tmp_path / "runs" / "at" / "curve-linf.json").read_text()
    assert '"digits:test"' in held  # the README's train-then-curve evaluates held-out digits


def test_python_blocks_run_in_order(home, tmp_path, monkeypatch) -> None:
    from sklearn.ensemble import RandomForestClassifier

    from robcurves.curve import RobustnessCurve
    from robcurves.data import load

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    _fixture_curves(tmp_path)
    small = load(home / "data" / "mnist")
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(
        small.x.reshape(small.n, -1), small.y)
    ns = {"my_torch_module": _mnist_model(), "forest": forest,
          "curve_a": RobustnessCurve.load(tmp_path / "runs" / "pgd-at" / "curve-linf.json"),
          "curve_b": RobustnessCurve.load(tmp_path / "runs" / "standard" / "curve-linf.json")}
    blocks = _blocks("python")
    assert len(blocks) >= 5
    for i, code in enumerate(blocks):
        code = code.replace("/path/to/mnist", str(home / "data" / "mnist"))
        try:
            exec(compile(code, f"README python block {i + 1}", "exec"), ns)
        except Exception as exc:
            raise AssertionError(f"README python block {i + 1} failed: {exc!r}\n{code}") from exc
    assert ns["curve"].n == 100 and ns["d"].n == 20
