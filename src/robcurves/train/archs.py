"""Architectures of the robustness literature, built by name for any input shape.

``cnn-small``, ``cnn-wide`` and ``mlp`` are plain ``nn.Sequential`` stacks of ``Conv2d`` /
``Linear`` / ``ReLU`` / ``Flatten`` so bound propagation (:mod:`robcurves.certificates`) can walk
them layer by layer. ``preact-resnet18`` and ``wrn-16-k`` are for CIFAR-sized images
(they work on CPU, slowly, and on any input size thanks to a global average pool).

``wrn-28-10`` is the WideResNet-28-10 of RobustBench's CIFAR-10 models (after TRADES), with the
same module names, so their state dicts load as they are (:func:`robcurves.train.load_checkpoint`);
any ``wrn-D-K`` with ``D = 6 n + 4`` builds the same layout at another depth and width
(``wrn-10-1`` is a tiny one for tests; ``wrn-34-10`` is TRADES'). ``wrn-16-k`` keeps robcurves'
own pre-activation layout and names, unchanged for existing model files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["ARCHS", "WideResNet", "build", "arch_names", "resolve_arch", "wide_resnet"]


def _flat_size(layers: Sequence[nn.Module], input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        out = nn.Sequential(*layers)(torch.zeros((1,) + tuple(input_shape)))
    return int(out[0].numel())


def _need_image(name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"architecture {name!r} needs image inputs (C, H, W); got input shape "
                         f"{tuple(input_shape)}")
    c, h, w = (int(s) for s in input_shape)
    return c, h, w


def mlp(input_shape: tuple[int, ...], num_classes: int, width: int = 1024,
        depth: int = 1) -> nn.Sequential:
    """Fully connected ReLU network with ``depth`` hidden layers of ``width`` units."""
    if int(width) < 1 or int(depth) < 1:
        raise ValueError(f"mlp needs width >= 1 and depth >= 1; got width={width}, depth={depth}")
    d = 1
    for s in input_shape:
        d *= int(s)
    layers: list[nn.Module] = [nn.Flatten()]
    for _ in range(int(depth)):
        layers += [nn.Linear(d, int(width)), nn.ReLU()]
        d = int(width)
    layers.append(nn.Linear(d, num_classes))
    return nn.Sequential(*layers)


def cnn_small(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """The small CNN of Wong & Kolter / Gowal et al.: conv 16 4x4 s2, conv 32 4x4 s2, dense 100,
    dense 100, dense K (ReLU between). Padding 1 keeps it valid on 8x8 inputs."""
    return cnn_wide(input_shape, num_classes, width=1, depth=2)


def cnn_wide(input_shape: tuple[int, ...], num_classes: int, width: float = 2,
             depth: int = 2) -> nn.Sequential:
    """The small CNN scaled for scaling studies.

    Args:
        width: multiplies every channel count and dense width (16w, 32w filters; 100w units).
        depth: number of conv layers (>= 2): the first two are 4x4 stride 2 as in ``cnn-small``,
            the extra ones 3x3 stride 1 with 32w filters.
    """
    c, _, _ = _need_image("cnn-wide", input_shape)
    if float(width) <= 0 or int(depth) < 2:
        raise ValueError(f"cnn-wide needs width > 0 and depth >= 2; got width={width}, "
                         f"depth={depth}")
    c1, c2, dense = (max(1, round(v * float(width))) for v in (16, 32, 100))
    layers: list[nn.Module] = [nn.Conv2d(c, c1, 4, stride=2, padding=1), nn.ReLU(),
                               nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU()]
    for _ in range(int(depth) - 2):
        layers += [nn.Conv2d(c2, c2, 3, stride=1, padding=1), nn.ReLU()]
    layers.append(nn.Flatten())
    flat = _flat_size(layers, input_shape)
    layers += [nn.Linear(flat, dense), nn.ReLU(), nn.Linear(dense, dense), nn.ReLU(),
               nn.Linear(dense, num_classes)]
    return nn.Sequential(*layers)


class _PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        return out + skip


class PreActResNet(nn.Module):
    """Pre-activation ResNet (He et al. 2016) with ``blocks`` per stage and a global pool."""

    def __init__(self, in_channels: int, num_classes: int, blocks: Sequence[int],
                 widths: Sequence[int], stem: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, stem, 3, stride=1, padding=1, bias=False)
        layers: list[nn.Module] = []
        cin = stem
        for i, (n, w) in enumerate(zip(blocks, widths, strict=True)):
            for j in range(n):
                layers.append(_PreActBlock(cin, w, 2 if (j == 0 and i > 0) else 1, dropout))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.stem(x))
        out = torch.relu(self.bn(out))
        out = torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)
        return self.fc(out)


def preact_resnet18(input_shape: tuple[int, ...], num_classes: int) -> PreActResNet:
    """PreAct ResNet-18: 4 stages of 2 blocks, 64/128/256/512 filters."""
    c, _, _ = _need_image("preact-resnet18", input_shape)
    return PreActResNet(c, num_classes, (2, 2, 2, 2), (64, 128, 256, 512), stem=64)


def wrn_16_k(input_shape: tuple[int, ...], num_classes: int, k: int = 4,
             dropout: float = 0.0) -> PreActResNet:
    """WideResNet-16-k (Zagoruyko & Komodakis): 3 stages of 2 blocks, 16k/32k/64k filters."""
    c, _, _ = _need_image("wrn-16-k", input_shape)
    if int(k) < 1:
        raise ValueError(f"wrn-16-k needs k >= 1; got {k}")
    k = int(k)
    return PreActResNet(c, num_classes, (2, 2, 2), (16 * k, 32 * k, 64 * k), stem=16,
                        dropout=float(dropout))


class _WideBlock(nn.Module):
    """RobustBench's (TRADES') WideResNet basic block: pre-activation ``bn1 -> relu -> conv1
    -> bn2 -> relu -> [dropout] -> conv2`` plus the input; when the width or stride changes,
    the shortcut ``convShortcut`` (1x1) is applied to the *activated* input."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.dropout = float(dropout)
        self.convShortcut = (nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
                             if cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = torch.relu(self.bn1(x))
        skip = x if self.convShortcut is None else self.convShortcut(act)
        out = torch.relu(self.bn2(self.conv1(act)))
        if self.dropout > 0:
            out = nn.functional.dropout(out, p=self.dropout, training=self.training)
        return skip + self.conv2(out)


class _WideGroup(nn.Module):
    """``n`` blocks as ``.layer`` (RobustBench's ``NetworkBlock``), the first with ``stride``."""

    def __init__(self, n: int, cin: int, cout: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.layer = nn.Sequential(*(_WideBlock(cin if i == 0 else cout, cout,
                                                stride if i == 0 else 1, dropout)
                                     for i in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WideResNet-D-K (Zagoruyko & Komodakis 2016) in the layout of RobustBench's CIFAR-10
    models: ``conv1`` (3x3, 16 filters), ``block1``/``block2``/``block3`` of ``(D - 4) / 6``
    blocks with 16K/32K/64K filters (strides 1, 2, 2), ``bn1``, ReLU, global average pool,
    ``fc``. No input normalisation inside: it takes raw inputs, like RobustBench's models.
    The pool is adaptive, so it equals RobustBench's 8x8 average pool on 32x32 inputs and also
    runs on other sizes."""

    def __init__(self, in_channels: int, num_classes: int, depth: int = 28, k: int = 10,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if int(depth) < 10 or (int(depth) - 4) % 6 or int(k) < 1:
            raise ValueError(f"a WideResNet needs depth = 6 n + 4 >= 10 and k >= 1; got "
                             f"depth={depth}, k={k}")
        n = (int(depth) - 4) // 6
        widths = (16, 16 * int(k), 32 * int(k), 64 * int(k))
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = _WideGroup(n, widths[0], widths[1], 1, dropout)
        self.block2 = _WideGroup(n, widths[1], widths[2], 2, dropout)
        self.block3 = _WideGroup(n, widths[2], widths[3], 2, dropout)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():  # He initialisation (fan-out), BN at identity, zero biases
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = torch.relu(self.bn1(out))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


def wide_resnet(input_shape: tuple[int, ...], num_classes: int, depth: int = 28, k: int = 10,
                dropout: float = 0.0) -> WideResNet:
    """WideResNet-``depth``-``k`` in RobustBench's layout (see :class:`WideResNet`)."""
    c, _, _ = _need_image(f"wrn-{depth}-{k}", input_shape)
    return WideResNet(c, num_classes, depth=depth, k=k, dropout=float(dropout))


def wrn_28_10(input_shape: tuple[int, ...], num_classes: int,
              dropout: float = 0.0) -> WideResNet:
    """WideResNet-28-10 as in RobustBench's CIFAR-10 models (36.5M parameters for 10
    classes)."""
    return wide_resnet(input_shape, num_classes, depth=28, k=10, dropout=dropout)


#: ``wrn-D-K`` names (other than ``wrn-16-k``) build :class:`WideResNet` at depth D, width K.
_WRN_NAME = re.compile(r"wrn-(\d+)-(\d+)")


#: name -> builder ``(input_shape, num_classes, **kwargs) -> nn.Module``
ARCHS: dict[str, Callable[..., nn.Module]] = {
    "cnn-small": cnn_small,
    "cnn-wide": cnn_wide,
    "mlp": mlp,
    "preact-resnet18": preact_resnet18,
    "wrn-16-k": wrn_16_k,
    "wrn-28-10": wrn_28_10,
}


def arch_names() -> list[str]:
    """Names :func:`build` accepts (besides any ``wrn-D-K``, see :func:`resolve_arch`)."""
    return sorted(ARCHS)


def resolve_arch(arch: str) -> tuple[Callable[..., nn.Module], dict]:
    """The builder of ``arch`` and the options its name fixes (``wrn-D-K``: depth and width).

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    if arch in ARCHS:
        return ARCHS[arch], {}
    m = _WRN_NAME.fullmatch(str(arch))
    if m:
        return wide_resnet, {"depth": int(m[1]), "k": int(m[2])}
    raise ValueError(f"unknown architecture {arch!r}; expected one of "
                     f"{', '.join(arch_names())} or wrn-D-K (RobustBench's WideResNet layout, "
                     "D = 6 n + 4, e.g. wrn-34-10)")


def build(arch: str, input_shape: Sequence[int], num_classes: int, **kwargs) -> nn.Module:
    """A freshly initialised network ``arch`` for inputs ``input_shape`` (without the batch
    axis) and ``num_classes`` outputs; ``kwargs`` are the architecture's options (``width``,
    ``depth``, ``k``...).

    Raises:
        ValueError: unknown name, bad option or an input shape the architecture cannot take.
    """
    builder, fixed = resolve_arch(arch)
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2; got {num_classes}")
    clash = sorted(set(fixed) & set(kwargs))
    if clash:
        raise ValueError(f"architecture {arch!r} fixes {', '.join(clash)} by its name; got "
                         f"{', '.join(f'{k}={kwargs[k]!r}' for k in clash)} as well")
    try:
        return builder(tuple(int(s) for s in input_shape), int(num_classes), **fixed, **kwargs)
    except TypeError as err:
        raise ValueError(f"bad options {kwargs!r} for architecture {arch!r}: {err}") from None
