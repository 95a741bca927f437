"""The one layer walker that IBP, CROWN and the MILP share.

:func:`sequential_layers` turns a ``torch.nn.Sequential`` (nested Sequentials flattened), plus
optional mean/std preprocessing folded in as a first affine layer, into a flat list of
:class:`Affine` and :class:`ReLU` steps with known input and output shapes. Every affine step
knows how to apply itself (``forward``), its elementwise absolute value (``abs_forward``, for
interval arithmetic), its transpose (``backward``, for backward linear relaxations) and its
matrix in sparse form (``sparse_matrix``, for the MILP).

Parameters are used as they are (not detached), so bounds built on them are differentiable with
respect to the module's parameters.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Normalize", "Affine", "ReLU", "sequential_layers", "forward",
           "affine_blocks", "steps_to", "SUPPORTED_LAYERS"]

SUPPORTED_LAYERS = ("Linear", "Conv2d", "ReLU", "Flatten", "BatchNorm1d", "BatchNorm2d",
                    "AvgPool2d", "Identity", "Dropout (eval mode)", "robcurves Normalize")


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel as an explicit layer the certifiers understand.

    Args:
        mean, std: scalars or per-channel sequences.
        axis: the channel axis counted from the end of a sample (``-3`` for ``(C, H, W)``
            images, ``-1`` for flat features).
    """

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float],
                 axis: int = -3) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32)
        std_t = torch.as_tensor(std, dtype=torch.float32)
        if (std_t <= 0).any():
            raise ValueError(f"std must be > 0; got {std_t.tolist()}")
        if axis >= 0:
            raise ValueError(f"axis counts from the end of a sample and must be < 0; got {axis}")
        shape = (-1,) + (1,) * (-axis - 1)
        self.register_buffer("mean", mean_t if mean_t.ndim == 0 else mean_t.reshape(shape))
        self.register_buffer("std", std_t if std_t.ndim == 0 else std_t.reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Step:
    """One step of the flattened network: maps ``(N, *in_shape)`` to ``(N, *out_shape)``."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    name: str

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class ReLU(Step):
    def __init__(self, shape: tuple[int, ...], name: str) -> None:
        self.in_shape = self.out_shape = shape
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


class Affine(Step):
    """An affine map ``x -> W x + b`` given implicitly by the layer's operations.

    Subclasses implement ``linear`` (``W x``), ``abs_linear`` (``|W| x``), ``transpose``
    (``A -> A W`` for ``A`` of shape ``(M, *out_shape)``) and ``bias`` (shape ``out_shape`` or
    ``None``).
    """

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def abs_linear(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def transpose(self, a: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def bias(self) -> torch.Tensor | None:
        return None

    # -- derived ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        b = self.bias()
        return out if b is None else out + b

    def backward(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For ``a`` of shape ``(N, K, *out_shape)``: ``(a W, a . b)`` with shapes
        ``(N, K, *in_shape)`` and ``(N, K)``."""
        n, k = a.shape[:2]
        b = self.bias()
        const = (a.new_zeros((n, k)) if b is None
                 else (a * b).reshape(n, k, -1).sum(-1))
        at = self.transpose(a.reshape((n * k,) + self.out_shape))
        return at.reshape((n, k) + self.in_shape), const

    def sparse_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W, b)`` as a float64 scipy CSR matrix ``(n_out, n_in)`` and vector ``(n_out,)``.

        Built column by column from ``linear`` applied to unit vectors (chunked), so it works
        for every affine step; meant for the small networks a MILP can handle.
        """
        import scipy.sparse as sp

        n_in = math.prod(self.in_shape)
        dev = next((t.device for t in vars(self).values() if isinstance(t, torch.Tensor)),
                   torch.device("cpu"))
        cols = []
        with torch.no_grad():
            for start in range(0, n_in, 512):
                stop = min(n_in, start + 512)
                eye = torch.zeros((stop - start, n_in), dtype=torch.float64, device=dev)
                eye[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
                out = self.linear(eye.reshape((-1,) + self.in_shape)).reshape(stop - start, -1)
                cols.append(sp.csr_matrix(out.detach().cpu().numpy().T))
        w = sp.hstack(cols).tocsr()
        b = self.bias()
        n_out = math.prod(self.out_shape)
        bias = (np.zeros(n_out) if b is None else
                torch.broadcast_to(b.detach(), self.out_shape).reshape(-1).cpu().double().numpy())
        return w, bias


class _Linear(Affine):
    def __init__(self, m: nn.Linear, in_shape: tuple[int, ...], name: str) -> None:
        if len(in_shape) != 1:
            raise ValueError(f"{name}: nn.Linear expects flat inputs (N, {m.in_features}); got "
                             f"sample shape {in_shape} (add nn.Flatten before it)")
        self.w, self.b = m.weight, m.bias
        self.in_shape, self.out_shape, self.name = in_shape, (m.out_features,), name

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.w)

    def abs_linear(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.w.abs())

    def transpose(self, a: torch.Tensor) -> torch.Tensor:
        return a @ self.w

    def bias(self) -> torch.Tensor | None:
        return self.b


class _Conv(Affine):
    def __init__(self, m: nn.Conv2d, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                 name: str) -> None:
        if m.padding_mode != "zeros":
            raise ValueError(f"{name}: Conv2d with padding_mode={m.padding_mode!r} is not "
                             "supported; only 'zeros'")
        if isinstance(m.padding, str):
            raise ValueError(f"{name}: Conv2d with padding={m.padding!r} is not supported; give "
                             "explicit integer padding")
        self.w, self.b = m.weight, m.bias
        self.stride, self.padding = m.stride, m.padding
        self.dilation, self.groups = m.dilation, m.groups
        self.in_shape, self.out_shape, self.name = in_shape, out_shape, name

    def _conv(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation, self.groups)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self.w)

    def abs_linear(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self.w.abs())

    def transpose(self, a: torch.Tensor) -> torch.Tensor:
        # the gradient of the convolution with respect to its input (a transposed
        # convolution of exactly the input size), several times faster on CPU than
        # conv_transpose2d
        return torch.nn.grad.conv2d_input((a.shape[0],) + self.in_shape, self.w, a,
                                          self.stride, self.padding, self.dilation, self.groups)

    def bias(self) -> torch.Tensor | None:
        return None if self.b is None else self.b.reshape(-1, 1, 1)


class _Scale(Affine):
    """Elementwise ``x * scale + shift`` (BatchNorm in eval mode, normalisation)."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor, shape: tuple[int, ...],
                 name: str) -> None:
        self.scale, self.shift = scale, shift
        self.in_shape = self.out_shape = shape
        self.name = name

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def abs_linear(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.abs()

    def transpose(self, a: torch.Tensor) -> torch.Tensor:
        return a * self.scale

    def bias(self) -> torch.Tensor | None:
        return self.shift


class _Reshape(Affine):
    def __init__(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...], name: str) -> None:
        self.in_shape, self.out_shape, self.name = in_shape, out_shape, name

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape((x.shape[0],) + self.out_shape)

    abs_linear = linear

    def transpose(self, a: torch.Tensor) -> torch.Tensor:
        return a.reshape((a.shape[0],) + self.in_shape)


class _AvgPool(_Conv):
    """AvgPool2d (zero padding counted, floor mode) as a depthwise convolution."""

    def __init__(self, m: nn.AvgPool2d, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                 name: str, like: torch.Tensor) -> None:
        pair = nn.modules.utils._pair
        k, s, p = pair(m.kernel_size), pair(m.stride or m.kernel_size), pair(m.padding)
        if m.ceil_mode or m.divisor_override is not None or (any(p) and not
                                                             m.count_include_pad):
            raise ValueError(f"{name}: AvgPool2d with ceil_mode, divisor_override or padding "
                             "without count_include_pad is not supported")
        c = in_shape[0]
        self.w = torch.full((c, 1) + k, 1.0 / (k[0] * k[1]), dtype=like.dtype,
                            device=like.device)
        self.b = None
        self.stride, self.padding, self.dilation, self.groups = s, p, (1, 1), c
        self.in_shape, self.out_shape, self.name = in_shape, out_shape, name


_SUPPORTED_TYPES = (nn.Linear, nn.Conv2d, nn.ReLU, nn.Flatten, nn.BatchNorm1d, nn.BatchNorm2d,
                    nn.AvgPool2d, Normalize, nn.Identity, nn.Dropout)


def _flatten_modules(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    if isinstance(module, nn.Sequential):
        out = []
        for name, child in module.named_children():
            out += _flatten_modules(child, f"{prefix}{name}.")
        return out
    return [(prefix.rstrip(".") or type(module).__name__, module)]


def _where(position: int, name: str, m: nn.Module) -> str:
    return f"layer {position} ({name!r}: {type(m).__name__})"


def sequential_layers(module: nn.Module, input_shape: Sequence[int],
                      mean: torch.Tensor | None = None, std: torch.Tensor | None = None,
                      like: torch.Tensor | None = None) -> list[Step]:
    """Flatten ``module`` into certifier steps for samples of shape ``input_shape``.

    Args:
        module: an ``nn.Sequential`` (nested ones are flattened) of supported layers, or one
            supported layer.
        input_shape: shape of one raw input sample, e.g. ``(1, 28, 28)``.
        mean, std: preprocessing applied before the module as ``(x - mean) / std``; folded in
            as a first elementwise affine step (broadcast against a sample).
        like: a tensor whose dtype/device is used for constant weights (AvgPool).

    Raises:
        ValueError: naming the first unsupported layer and its position.
    """
    shape = tuple(int(s) for s in input_shape)
    like = like if like is not None else torch.zeros(())
    steps: list[Step] = []
    if mean is not None or std is not None:
        m = mean if mean is not None else torch.zeros(())
        s = std if std is not None else torch.ones(())
        steps.append(_Scale(1.0 / s, -m / s, shape, "preprocessing"))
    for pos, (name, m) in enumerate(_flatten_modules(module)):
        where = _where(pos, name, m)
        if not isinstance(m, _SUPPORTED_TYPES) or (isinstance(m, nn.Dropout) and m.training):
            raise ValueError(f"unsupported {where}; certified bounds support "
                             f"{', '.join(SUPPORTED_LAYERS)}")
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.training:
            raise ValueError(f"{where} is in training mode; bounds need BatchNorm in eval "
                             "mode (call module.eval())")
        with torch.no_grad():
            param = next(m.parameters(), None)
            ref = param if param is not None else like
            probe = torch.zeros((1,) + shape, dtype=ref.dtype, device=ref.device)
            try:
                out_shape = tuple(m(probe).shape[1:]) if not isinstance(m, nn.ReLU) else shape
            except Exception as exc:  # a shape mismatch: say where
                raise ValueError(f"{where} cannot take inputs of shape {shape}: {exc}") from exc
        if isinstance(m, nn.Linear):
            steps.append(_Linear(m, shape, where))
        elif isinstance(m, nn.Conv2d):
            steps.append(_Conv(m, shape, out_shape, where))
        elif isinstance(m, nn.ReLU):
            steps.append(ReLU(shape, where))
        elif isinstance(m, nn.Flatten):
            steps.append(_Reshape(shape, out_shape, where))
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if m.running_mean is None:
                raise ValueError(f"{where} has no running statistics (track_running_stats="
                                 "False); it cannot be bounded as a fixed affine map")
            scale = torch.rsqrt(m.running_var + m.eps)
            if m.weight is not None:
                scale = m.weight * scale
            shift = -m.running_mean * scale
            if m.bias is not None:
                shift = shift + m.bias
            view = (-1,) + (1,) * (len(shape) - 1)
            steps.append(_Scale(scale.reshape(view), shift.reshape(view), shape, where))
        elif isinstance(m, nn.AvgPool2d):
            steps.append(_AvgPool(m, shape, out_shape, where, like))
        elif isinstance(m, Normalize):
            steps.append(_Scale(1.0 / m.std, -m.mean / m.std, shape, where))
        # nn.Identity and eval-mode nn.Dropout: nothing to do
        shape = out_shape
    return steps


def steps_to(steps: Sequence[Step], device: str | torch.device) -> list[Step]:
    """Copies of ``steps`` whose tensors (weights, biases, scales) live on ``device``; the
    steps themselves are returned where every tensor is there already."""
    dev = torch.device(device)
    out: list[Step] = []
    for s in steps:
        moved = {k: v.to(dev) for k, v in vars(s).items()
                 if isinstance(v, torch.Tensor) and v.device != dev}
        if moved:
            s = copy.copy(s)
            vars(s).update(moved)
        out.append(s)
    return out


def forward(steps: Sequence[Step], x: torch.Tensor) -> torch.Tensor:
    """The network's output on ``x``: every step applied in turn."""
    for s in steps:
        x = s.forward(x)
    return x


def affine_blocks(steps: Sequence[Step]) -> list:
    """The composed affine maps ``(W, b)`` (scipy CSR, numpy) before each ReLU and after the
    last one (one block for a network without ReLU)."""
    import scipy.sparse as sp

    n_in = math.prod(steps[0].in_shape)
    cur_w, cur_b = sp.identity(n_in, format="csr"), np.zeros(n_in)
    out = []
    for s in steps:
        if isinstance(s, ReLU):
            out.append((cur_w, cur_b))
            n = math.prod(s.out_shape)
            cur_w, cur_b = sp.identity(n, format="csr"), np.zeros(n)
        else:
            assert isinstance(s, Affine)
            w, b = s.sparse_matrix()
            cur_w, cur_b = (w @ cur_w).tocsr(), w @ cur_b + b
    out.append((cur_w, cur_b))
    return out
