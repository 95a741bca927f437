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
