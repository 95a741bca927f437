"""Architectures of the robustness literature, built by name for any input shape.

``cnn-small``, ``cnn-wide`` and ``mlp`` are plain ``nn.Sequential`` stacks of ``Conv2d`` /
``Linear`` / ``ReLU`` / ``Flatten`` so bound propagation (:mod:`robcurves.certificates`) can walk
them layer by layer. ``preact-resnet18`` and ``wrn-16-k`` are for CIFAR-sized images
(they work on CPU, slowly, and on any input size thanks to a global average pool).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["ARCHS", "build", "arch_names"]


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


#: name -> builder ``(input_shape, num_classes, **kwargs) -> nn.Module``
ARCHS: dict[str, Callable[..., nn.Module]] = {
    "cnn-small": cnn_small,
    "cnn-wide": cnn_wide,
    "mlp": mlp,
    "preact-resnet18": preact_resnet18,
    "wrn-16-k": wrn_16_k,
}


def arch_names() -> list[str]:
    """Names :func:`build` accepts."""
    return sorted(ARCHS)


def build(arch: str, input_shape: Sequence[int], num_classes: int, **kwargs) -> nn.Module:
    """A freshly initialised network ``arch`` for inputs ``input_shape`` (without the batch
    axis) and ``num_classes`` outputs; ``kwargs`` are the architecture's options (``width``,
    ``depth``, ``k``...).

    Raises:
        ValueError: unknown name, bad option or an input shape the architecture cannot take.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of "
                         f"{', '.join(arch_names())}")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2; got {num_classes}")
    try:
        return ARCHS[arch](tuple(int(s) for s in input_shape), int(num_classes), **kwargs)
    except TypeError as err:
        raise ValueError(f"bad options {kwargs!r} for architecture {arch!r}: {err}") from None
