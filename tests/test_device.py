"""The device plumbing (issue 18): device names, memory-based batch sizes, deterministic mode.

This machine has no GPU: CUDA is exercised through its absence (clear errors) and a mocked
``torch.cuda.mem_get_info``; ``benchmarks/gpu.py`` is the check on a real GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import robcurves
from robcurves import _device
from robcurves._device import batch_size_for, resolve_device, set_deterministic


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def test_the_default_is_where_the_model_lives():
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(None, _net()) == torch.device("cpu")
    on_meta = _net().to("meta")  # a device other than the CPU, available everywhere
    assert resolve_device(None, on_meta) == torch.device("meta")
    assert resolve_device("cpu", on_meta) == torch.device("cpu")  # explicit wins
    clf = robcurves.wrap(_net(), device="cpu")
    assert clf.device == torch.device("cpu")
    assert next(clf.module.parameters()).device == torch.device("cpu")


def test_auto_picks_cuda_only_when_available(no_cuda):
    assert resolve_device("auto") == torch.device("cpu")
    assert robcurves.wrap(_net(), device="auto").device == torch.device("cpu")


def test_auto_and_indices_with_gpus(two_gpus):
    assert resolve_device("auto") == torch.device("cuda:0")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"'cuda:2' is not available here: there is no GPU 2; "
                                         r"this machine has: cpu, cuda:0, cuda:1"):
        resolve_device("cuda:2")


def test_training_defaults_to_cuda_when_available(two_gpus):
    """fit builds a fresh network (on the CPU), so its default is "auto", not the model's
    device: a GPU machine trains on its GPU without being told."""
    from robcurves.train.loop import _device as training_device

    assert training_device(None) == torch.device("cuda:0")
    assert training_device("cpu") == torch.device("cpu")


def test_training_defaults_to_the_cpu_without_cuda(no_cuda):
    from robcurves.train.loop import _device as training_device

    assert training_device(None) == torch.device("cpu")


def test_cuda_without_cuda_is_a_clear_error_before_any_work(no_cuda, tmp_path):
    msg = r"device 'cuda' is not available here: CUDA is not available .*this machine has: cpu"
    with pytest.raises(ValueError, match=msg):
        resolve_device("cuda")
    with pytest.raises(ValueError, match=msg):
        robcurves.wrap(_net(), device="cuda")
    with pytest.raises(ValueError, match=r"device 'cuda:0' is not available"):
        robcurves.train.fit("digits", "mlp", epochs=1, device="cuda:0", progress=False,
                            checkpoint=tmp_path / "ck")
    assert not (tmp_path / "ck").exists()
    with pytest.raises(ValueError, match=r"unknown device 'gpu0'.*this machine has: cpu"):
        resolve_device("gpu0")


def test_an_explicit_cpu_device_gives_the_same_distances_as_the_default():
    net = _net()
    x = np.random.default_rng(0).random((12, 6), dtype=np.float32)
    y = np.random.default_rng(1).integers(0, 3, 12)
    a = robcurves.distances(robcurves.wrap(net), x, y, "l2", attack="fmn", steps=10)
    b = robcurves.distances(robcurves.wrap(net, device="cpu"), x, y, "l2", attack="fmn",
                            steps=10)
    assert np.array_equal(a.distances, b.distances) and np.isfinite(a.distances).any()


def test_batch_size_from_free_memory(monkeypatch, two_gpus):
    seen = []

    def free(dev):
        seen.append(dev)
        return 10 * 2**30, 80 * 2**30  # 10 GiB free of 80

    monkeypatch.setattr(torch.cuda, "mem_get_info", free)
    # half of 10 GiB at 2 MiB per point: 2560 points
    assert batch_size_for("cuda:1", 2 * 2**20) == 2560
    assert seen == [torch.device("cuda:1")]
    assert batch_size_for("cuda", 2 * 2**20, share=0.25) == 1280
    assert batch_size_for("cuda", 2 * 2**20, cap=1000) == 1000  # the cap
    assert batch_size_for("cuda", 100 * 2**30) == 1  # never 0, even when nothing fits
    assert batch_size_for("cuda", 1) == _device.BATCH_CAP
    assert batch_size_for("cpu", 2 * 2**20, cap=300) == 300  # no memory query off CUDA
    assert len(seen) == 5
    for bad, match in (({"bytes_per_point": 0}, "bytes_per_point must be > 0"),
                       ({"bytes_per_point": 1, "cap": 0}, "cap must be an integer >= 1"),
                       ({"bytes_per_point": 1, "share": 1.5}, r"share must be in \(0, 1\]")):
        with pytest.raises(ValueError, match=match):
            batch_size_for("cuda", **bad)


def test_attack_batch_size_off_cuda_is_the_cap():
    clf = robcurves.wrap(_net())
    assert _device.attack_batch_size(clf, np.zeros((4, 6), np.float32), cap=77) == 77


def test_deterministic_sets_and_restores_torch_flags(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
              torch.are_deterministic_algorithms_enabled())
    try:
        torch.backends.cudnn.benchmark = True
        robcurves.wrap(_net(), deterministic=True)
        assert torch.backends.cudnn.deterministic is True
        assert torch.backends.cudnn.benchmark is False
        assert torch.are_deterministic_algorithms_enabled()
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        set_deterministic(False)
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic is False
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[:2]
        torch.use_deterministic_algorithms(before[2])


# -- certify and inter-class distances: device= (issue 18, item 3) ----------------------------

def _points(n: int = 16, dim: int = 6, classes: int = 3, seed: int = 0):
    x = np.random.default_rng(seed).random((n, dim), dtype=np.float32)
    y = np.random.default_rng(seed + 1).integers(0, classes, n)
    return x, y


@pytest.mark.parametrize(("method", "norm"), [("crown", "l2"), ("ibp", "inf"), ("crown", "l1")])
def test_certify_on_an_explicit_cpu_device_is_the_default(method, norm):
    net = _net()
    x, y = _points()
    a = robcurves.certify(net, x, y, norm, method, iters=6, batch_size=5)
    b = robcurves.certify(net, x, y, norm, method, iters=6, batch_size=5, device="cpu")
    c = robcurves.certify(robcurves.wrap(net, device="cpu"), x, y, norm, method, iters=6,
                          batch_size=5, device="auto")  # no CUDA here: auto is the CPU
    for other in (b, c):
        assert np.array_equal(a.distances, other.distances)
        assert np.array_equal(a.predictions, other.predictions)
    assert (a.distances > 0).any() and np.isfinite(a.distances).all()


def test_certify_keeps_its_default_batch_of_32_off_cuda(tmp_path):
    from robcurves.store import batch_spans

    x, y = _points(n=40)
    robcurves.certify(_net(), x, y, "inf", "ibp", iters=2, store=tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").glob("batch-*.npz")) == [
        f"batch-{a:09d}-{b:09d}.npz" for a, b in batch_spans(40, 32)]


@pytest.mark.parametrize(("device", "match"), [
    ("cuda", r"device 'cuda' is not available here: CUDA is not available"),
    ("cuda:7", r"device 'cuda:7' is not available here"),
    ("nonsense", r"unknown device 'nonsense'.*this machine has: cpu"),
])
def test_certify_refuses_a_device_it_lacks_before_any_work(no_cuda, tmp_path, monkeypatch,
                                                            device, match):
    from robcurves import certificates

    def never(*args, **kwargs):
        raise AssertionError("work started before the device was checked")

    monkeypatch.setattr(certificates, "network_steps", never)
    x, y = _points()
    for method in ("crown", "milp", "exact-linear"):
        with pytest.raises(ValueError, match=match):
            robcurves.certify(_net(), x, y, "inf", method, device=device,
                              store=tmp_path / method)
        assert not (tmp_path / method).exists()


def test_certify_refuses_a_model_on_the_meta_device():
    x, y = _points()
    with pytest.raises(ValueError, match="device 'meta' is not supported"):
        robcurves.certify(_net().to("meta"), x, y, "l2", "crown")


def test_certify_refuses_a_device_the_ray_workers_would_not_use(two_gpus):
    # checked before Ray is imported or reached: no Ray needed for this refusal
    x, y = _points()
    with pytest.raises(ValueError, match=r"device 'cuda:0' does not fit backend='ray' with "
                                         r"gpus_per_worker=0.0: the workers compute on their "
                                         r"CPUs"):
        robcurves.certify(_net(), x, y, "l2", "crown", backend="ray", device="cuda:0")
    with pytest.raises(ValueError, match="'cpu' does not fit .*the workers compute on CUDA"):
        robcurves.certify(_net(), x, y, "l2", "crown", backend="ray", device="cpu",
                          gpus_per_worker=0.5)


def test_certify_batch_size_on_cuda_comes_from_free_memory(monkeypatch, two_gpus):
    """On CUDA the default batch follows the free memory, capped (the GPU is mocked: the
    network stays on the CPU, only its reported device and the free memory are faked)."""
    from robcurves import certificates
    from robcurves.certificates import _default_batch_size, network_steps

    steps = network_steps(robcurves.wrap(_net()), (6,))
    assert _default_batch_size(steps, "crown", (6,)) == 32  # on the CPU
    monkeypatch.setattr(certificates, "_steps_device", lambda s: torch.device("cuda:0"))
    free = {"bytes": 2**20}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev: (free["bytes"], 2**34))
    small = _default_batch_size(steps, "crown", (6,))
    free["bytes"] = 2**24
    large = _default_batch_size(steps, "crown", (6,))
    assert 1 <= small < large  # more free memory, larger batches
    free["bytes"] = 2**40
    assert _default_batch_size(steps, "ibp", (6,)) == certificates.CUDA_BATCH_CAP  # capped
    assert _default_batch_size(steps, "milp", (6,)) == 32  # the MILP stays on the CPU


def test_steps_to_moves_every_tensor_and_copies_nothing_in_place():
    from robcurves.certificates import network_steps
    from robcurves.certificates._layers import steps_to

    steps = network_steps(robcurves.wrap(_net(), preprocessing={"mean": 0.5, "std": 0.25}),
                          (6,))
    assert steps_to(steps, "cpu") == steps  # already there: the same objects
    moved = steps_to(steps, "meta")
    tensors = [t for s in moved for t in vars(s).values() if isinstance(t, torch.Tensor)]
    assert tensors and all(t.device.type == "meta" for t in tensors)
    assert all(t.device.type == "cpu" for s in steps for t in vars(s).values()
               if isinstance(t, torch.Tensor))  # the originals are untouched


def test_interclass_on_an_explicit_cpu_device_is_the_default():
    ds = robcurves.data.load("digits")
    x, y = ds.x[:150], ds.y[:150]
    for norm in ("inf", "l2", "l1"):
        a = robcurves.interclass_distances(x, y, norm, block_size=32)
        b = robcurves.interclass_distances(torch.as_tensor(x), torch.as_tensor(y), norm,
                                           block_size=32, device="cpu")
        assert np.array_equal(a.distances, b.distances)
        assert np.array_equal(a.neighbors, b.neighbors)
        assert np.isfinite(a.distances).all()


@pytest.mark.parametrize(("device", "match"), [
    ("cuda", r"device 'cuda' is not available here"),
    ("cuda:7", r"device 'cuda:7' is not available here"),
    ("nonsense", r"unknown device 'nonsense'"),
])
def test_interclass_refuses_a_device_it_lacks(no_cuda, monkeypatch, device, match):
    from robcurves import scale

    def never(*args, **kwargs):
        raise AssertionError("work started before the device was checked")

    monkeypatch.setattr(scale, "Engine", never)
    x, y = _points()
    with pytest.raises(ValueError, match=match):
        robcurves.interclass_distances(x, y, "l2", device=device)


def test_interclass_refuses_meta_data_and_a_gpu_with_ray(two_gpus):
    x, y = _points()
    with pytest.raises(ValueError, match="meta device"):
        robcurves.interclass_distances(torch.as_tensor(x).to("meta"), y, "l2")
    with pytest.raises(ValueError, match=r"device 'cuda:1' does not fit backend='ray'"):
        robcurves.interclass_distances(x, y, "l2", backend="ray", device="cuda:1")


def test_scale_cli_refuses_a_missing_device_before_any_output(no_cuda, tmp_path, capsys):
    from robcurves.cli import main

    out = tmp_path / "o"
    assert main(["scale", "digits", "--limit", "50", "--norms", "l2", "--out", str(out),
                 "--device", "cuda:3", "--no-progress"]) == 2
    assert "'cuda:3' is not available here" in capsys.readouterr().err
    assert not out.exists()
    assert main(["scale", "digits", "--limit", "60", "--norms", "l2", "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    assert (out / "scale.json").exists()
