"""wrn-28-10 / wrn-D-K (RobustBench's WideResNet layout) and loading state dicts from disk
(robcurves.train.load_checkpoint, ``--model ARCH:CHECKPOINT``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robcurves.cli._common import load_model_spec
from robcurves.train import arch_names, build, load_checkpoint


def _expected_keys(depth: int, k: int, num_classes_bias: bool = True) -> set[str]:
    """RobustBench's WideResNet state-dict keys, enumerated from its documented layout."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"conv1.weight", "fc.weight"} | {f"bn1.{s}" for s in bn}
    if num_classes_bias:
        keys.add("fc.bias")
    n = (depth - 4) // 6
    widths = [16, 16 * k, 32 * k, 64 * k]
    for g in range(3):
        for i in range(n):
            pre = f"block{g + 1}.layer.{i}."
            keys |= {pre + f"bn1.{s}" for s in bn} | {pre + f"bn2.{s}" for s in bn}
            keys |= {pre + "conv1.weight", pre + "conv2.weight"}
            cin = widths[g] if i == 0 else widths[g + 1]
            if cin != widths[g + 1]:
                keys.add(pre + "convShortcut.weight")
    return keys


def _randomise_bn(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))


def _reference_forward(sd: dict, x: torch.Tensor, depth: int) -> torch.Tensor:
    """RobustBench's WideResNet forward written out with functional ops from the state dict
    (eval mode; the final pool is its fixed 8x8 average pool)."""
    def bn(p, t):
        return F.batch_norm(t, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"],
                            sd[p + "bias"], training=False, eps=1e-5)

    out = F.conv2d(x, sd["conv1.weight"], padding=1)
    n = (depth - 4) // 6
    for g in range(3):
        for i in range(n):
            pre = f"block{g + 1}.layer.{i}."
            stride = 2 if (g > 0 and i == 0) else 1
            equal = pre + "convShortcut.weight" not in sd
            if not equal:
                out = F.relu(bn(pre + "bn1.", out))
                h = out
            else:
                h = F.relu(bn(pre + "bn1.", out))
            h = F.relu(bn(pre + "bn2.", F.conv2d(h, sd[pre + "conv1.weight"], stride=stride,
                                                 padding=1)))
            h = F.conv2d(h, sd[pre + "conv2.weight"], padding=1)
            skip = out if equal else F.conv2d(out, sd[pre + "convShortcut.weight"],
                                              stride=stride)
            out = skip + h
    out = F.relu(bn("bn1.", out))
    out = F.avg_pool2d(out, 8).flatten(1)
    return F.linear(out, sd["fc.weight"], sd["fc.bias"])


def test_wrn_28_10_has_the_known_parameter_count():
    m = build("wrn-28-10", (3, 32, 32), 10)
    count = sum(p.numel() for p in m.parameters())
    assert count == 36_479_194  # the 36.5M of WRN-28-10 on CIFAR-10
    assert set(m.state_dict()) == _expected_keys(28, 10)
    assert "wrn-28-10" in arch_names()


@pytest.mark.parametrize("depth, k", [(10, 1), (16, 2)])
def test_wrn_key_layout_and_forward_match_robustbench(depth, k):
    torch.manual_seed(0)
    m = build(f"wrn-{depth}-{k}", (3, 32, 32), 10)
    assert set(m.state_dict()) == _expected_keys(depth, k)
    _randomise_bn(m)
    m.eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        ours = m(x)
        ref = _reference_forward(m.state_dict(), x, depth)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_wrn_names_and_options_are_checked():
    with pytest.raises(ValueError, match="bad options.*depth.*wrn-28-10"):
        build("wrn-28-10", (3, 32, 32), 10, depth=10)
    with pytest.raises(ValueError, match="wrn-34-10' fixes depth"):
        build("wrn-34-10", (3, 32, 32), 10, depth=10)
    with pytest.raises(ValueError, match="depth = 6 n \\+ 4"):
        build("wrn-12-1", (3, 32, 32), 10)
    with pytest.raises(ValueError, match="wrn-28-10.*wrn-D-K"):
        build("resnet-50", (3, 32, 32), 10)
    # wrn-16-k keeps robcurves' own layout (existing model files stay loadable)
    assert "stem.weight" in build("wrn-16-k", (3, 32, 32), 10, k=1).state_dict()


def _saved(tmp_path, module, wrap, name="ckpt.pt"):
    sd = {k: v.clone() for k, v in module.state_dict().items()}
    obj = wrap(sd)
    path = tmp_path / name
    torch.save(obj, path)
    return path


WRAPPINGS = {
    "plain": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 3},
    "module-prefix": lambda sd: {"module." + k: v for k, v in sd.items()},
    "nested-module": lambda sd: {"model_state_dict": {"module." + k: v for k, v in sd.items()},
                                 "optimizer": {"lr": 0.1}},
    "sub_block1": lambda sd: {**sd, **{"sub_block1.layer.0." + k.split(".", 3)[3]: v
                                       for k, v in sd.items() if k.startswith("block1.layer.0")}},
}


@pytest.mark.parametrize("wrapping", list(WRAPPINGS))
def test_load_checkpoint_reads_robustbench_state_dicts(tmp_path, wrapping):
    torch.manual_seed(1)
    src = build("wrn-10-1", (3, 32, 32), 7)
    _randomise_bn(src, seed=2)
    src.eval()
    path = _saved(tmp_path, src, WRAPPINGS[wrapping])
    m = load_checkpoint(path, "wrn-10-1")
    assert not m.training
    assert m.robcurves_meta["num_classes"] == 7  # read from fc.weight
    assert m.robcurves_meta["input_shape"] == [3, 32, 32]
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m(x), src(x), rtol=0, atol=0)
    # the CLI's --model ARCH:CHECKPOINT goes through the same loader
    cli = load_model_spec(f"wrn-10-1:{path}")
    with torch.no_grad():
        torch.testing.assert_close(cli(x), src(x), rtol=0, atol=0)


def test_load_checkpoint_names_missing_extra_and_misshaped_keys(tmp_path):
    src = build("wrn-10-1", (3, 32, 32), 10)
    missing = _saved(tmp_path, src, lambda sd: {k: v for k, v in sd.items()
                                                if k != "block2.layer.0.conv1.weight"}, "a.pt")
    with pytest.raises(ValueError, match=r"missing keys: block2\.layer\.0\.conv1\.weight"):
        load_checkpoint(missing, "wrn-10-1")
    extra = _saved(tmp_path, src, lambda sd: {**sd, "normalize.mean": torch.zeros(3)}, "b.pt")
    with pytest.raises(ValueError, match=r"unexpected keys: normalize\.mean"):
        load_checkpoint(extra, "wrn-10-1")
    # a wider network's checkpoint: shapes do not fit, named with both shapes
    wide = _saved(tmp_path, build("wrn-10-2", (3, 32, 32), 10), lambda sd: sd, "c.pt")
    with pytest.raises(ValueError, match=r"shape mismatches: block1\.layer\.0\.conv1\.weight "
                       r"\(32, 16, 3, 3\) \(expected \(16, 16, 3, 3\)\)"):
        load_checkpoint(wide, "wrn-10-1")
    with pytest.raises(ValueError, match="unexpected keys: .*convShortcut"):
        load_checkpoint(wide, "wrn-10-1")


def test_load_checkpoint_rejects_bad_names_and_files(tmp_path):
    good = _saved(tmp_path, build("wrn-10-1", (3, 32, 32), 10), lambda sd: sd)
    with pytest.raises(ValueError, match="unknown architecture 'wrn-28-1O'.*cnn-small.*wrn-28-10"):
        load_checkpoint(good, "wrn-28-1O")
    with pytest.raises(ValueError, match="unknown architecture 'wide-resnet'.*wrn-28-10"):
        load_model_spec(f"wide-resnet:{good}")
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_checkpoint(tmp_path / "nothere.pt", "wrn-10-1")
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "opt.pt")
    with pytest.raises(ValueError, match="expected a state dict"):
        load_checkpoint(tmp_path / "opt.pt", "wrn-10-1")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.pt", "wrn-10-1")


def test_wrn_trains_and_runs_on_other_input_sizes():
    torch.manual_seed(0)
    net = build("wrn-10-1", (1, 28, 28), 10, dropout=0.3)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    loss = F.cross_entropy(net.train()(x), y)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    opt.step()
    assert torch.isfinite(loss) and net.eval()(x).shape == (4, 10)


def test_cli_curve_with_arch_checkpoint_matches_the_library(tmp_path, capsys):
    import numpy as np

    import robcurves
    from robcurves.cli import main

    torch.manual_seed(0)
    src = build("wrn-10-1", (3, 32, 32), 10).eval()
    ckpt = _saved(tmp_path, src, WRAPPINGS["state_dict"])
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(4, 3, 32, 32)).astype(np.float32)
    y = np.arange(4)
    np.savez(tmp_path / "tiny.npz", x=x, y=y)
    assert main(["curve", "--model", f"wrn-10-1:{ckpt}", "--data", str(tmp_path / "tiny.npz"),
                 "--n", "4", "--norms", "l2", "--attack", "deepfool", "--out",
                 str(tmp_path / "o"), "--no-progress"]) == 0
    c = robcurves.RobustnessCurve.load(tmp_path / "o" / "curve-l2.json")
    d = robcurves.distances(src, x, y, "l2", attack="deepfool")
    np.testing.assert_allclose(c.distances, d.distances, rtol=1e-6)
    assert c.metadata["model"]["checkpoint"] == str(ckpt)
