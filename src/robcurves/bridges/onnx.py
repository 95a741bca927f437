"""ONNX models: forward with onnxruntime, gradients through a torch copy of the graph.

Gradients come from :class:`OnnxTorchGraph`, robcurves' own small interpreter that runs the
ONNX graph node by node with torch operators (differentiable by torch autograd). It covers the
operators of feed-forward classifiers (dense, convolutional and residual nets as exported by
``torch.onnx`` or ``tf2onnx``; see ``OnnxTorchGraph.SUPPORTED``). We wrote it instead of using
``onnx2torch`` because that package imports ``torchvision`` unconditionally and pins its own
torch, which robcurves must not pull in; an interpreter over a known operator list also fails
loudly, at wrap time, on anything it does not know.

On the first batch the torch copy is checked against onnxruntime; if an operator is missing or
the two disagree, the model stays usable label-only (onnxruntime logits, no gradients) and a
warning names the missing operators, asks for a report to the robcurves issue tracker and says
that only decision-based attacks apply and that the curve is then looser.

Graphs exported with a fixed batch size (the model zoo's, batch 1) take any batch: onnxruntime
gets them in chunks of the declared size, the torch copy the whole batch at once (see
:class:`OnnxTorchGraph`). Logits of shape (N, K, 1, ..., 1), as nets ending in a 1x1
convolution return them, are used as (N, K).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..classifier import Classifier, Preprocess
from ._common import require
from .label import LABEL_ONLY_HINT

__all__ = ["OnnxClassifier", "OnnxTorchGraph", "UnsupportedOnnxGraph"]


class UnsupportedOnnxGraph(ValueError):
    """The ONNX graph uses an operator or attribute the torch interpreter does not cover."""


def _attrs(node: Any, onnx: Any) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _str(v: Any, default: str) -> str:
    v = default if v is None else v
    return v.decode() if isinstance(v, bytes) else str(v)


def _ints(t: torch.Tensor | None) -> list[int] | None:
    return None if t is None else [int(v) for v in t.reshape(-1).tolist()]


def _floats(t: torch.Tensor | None) -> list[float] | None:
    return None if t is None else [float(v) for v in t.reshape(-1).tolist()]


def _given(ins: tuple, pos: int) -> torch.Tensor | None:
    """Input ``pos`` if present and not empty (ONNX marks an omitted optional input by ``""``
    and some exporters by an empty tensor)."""
    if len(ins) > pos and ins[pos] is not None and ins[pos].numel() > 0:
        return ins[pos]
    return None


def _pads(pads: list[int] | None, n: int) -> list[int]:
    """ONNX pads ``[b1, b2, ..., e1, e2, ...]`` -> F.pad order (last axis first)."""
    pads = list(pads) if pads else [0] * (2 * n)
    out: list[int] = []
    for i in reversed(range(n)):
        out += [pads[i], pads[i + n]]
    return out


def _auto_pads(a: dict, x: torch.Tensor, kernel: list[int], strides: list[int],
               dilations: list[int]) -> list[int]:
    """Explicit ONNX pads for ``auto_pad`` (SAME_UPPER/SAME_LOWER/VALID) or the ``pads`` attr."""
    n = len(kernel)
    mode = _str(a.get("auto_pad"), "NOTSET")
    if mode in ("NOTSET", ""):
        return list(a.get("pads", [0] * (2 * n)))
    if mode == "VALID":
        return [0] * (2 * n)
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise UnsupportedOnnxGraph(f"auto_pad={mode!r} is not supported")
    begin, end = [], []
    for i in range(n):
        size = x.shape[2 + i]
        total = max((-(-size // strides[i]) - 1) * strides[i] + (kernel[i] - 1) * dilations[i]
                    + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begin.append(small if mode == "SAME_UPPER" else big)
        end.append(big if mode == "SAME_UPPER" else small)
    return begin + end


def _conv(a: dict, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None
          ) -> torch.Tensor:
    n = w.ndim - 2
    strides = list(a.get("strides", [1] * n))
    dil = list(a.get("dilations", [1] * n))
    pads = _auto_pads(a, x, list(w.shape[2:]), strides, dil)
    x = F.pad(x, _pads(pads, n))
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
    return conv(x, w, b, stride=strides, dilation=dil, groups=a.get("group", 1))


def _conv_transpose(a: dict, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None
                    ) -> torch.Tensor:
    n = w.ndim - 2
    if "output_shape" in a or _str(a.get("auto_pad"), "NOTSET") not in ("NOTSET", "VALID"):
        raise UnsupportedOnnxGraph("ConvTranspose with output_shape or SAME auto_pad is not "
                                   "supported")
    strides = list(a.get("strides", [1] * n))
    dil = list(a.get("dilations", [1] * n))
    pads = list(a.get("pads", [0] * (2 * n)))
    out_pad = list(a.get("output_padding", [0] * n))
    conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[n]
    y = conv(x, w, b, stride=strides, dilation=dil, groups=a.get("group", 1),
             output_padding=out_pad)
    # crop the ONNX pads (begin and end may differ, which torch's padding= cannot express)
    idx = [slice(None), slice(None)] + [slice(pads[i], y.shape[2 + i] - pads[i + n])
                                        for i in range(n)]
    return y[tuple(idx)]


def _pool(kind: str, a: dict, x: torch.Tensor) -> torch.Tensor:
    k = list(a["kernel_shape"])
    n = len(k)
    stride = list(a.get("strides", [1] * n))
    dil = list(a.get("dilations", [1] * n))
    if kind == "AveragePool" and dil != [1] * n:
        raise UnsupportedOnnxGraph("AveragePool with dilations is not supported")
    pads = _auto_pads(a, x, k, stride, dil)
    if a.get("ceil_mode", 0):  # extra end padding so that floor mode gives ceil's output size
        for i in range(n):
            span = x.shape[2 + i] + pads[i] + pads[i + n] - ((k[i] - 1) * dil[i] + 1)
            out = -(-span // stride[i]) + 1
            if (out - 1) * stride[i] >= x.shape[2 + i] + pads[i]:  # last window starts in pad
                out -= 1
            pads[i + n] += max(0, (out - 1) * stride[i] + (k[i] - 1) * dil[i] + 1
                               - (x.shape[2 + i] + pads[i] + pads[i + n]))
    declared = list(a.get("pads", [0] * (2 * n))) if _str(a.get("auto_pad"), "NOTSET") in (
        "NOTSET", "") else pads
    if kind == "MaxPool":
        x = F.pad(x, _pads(pads, n), value=-math.inf)
        return {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n](x, k, stride,
                                                                      dilation=dil)
    avg = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
    if not any(pads):
        return avg(x, k, stride)
    ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
    if a.get("count_include_pad", 0):  # the declared pads count, the ceil_mode extra does not
        ones = F.pad(ones, _pads(declared, n), value=1.0)
        extra = [p - q for p, q in zip(pads, declared, strict=True)]
        ones = F.pad(ones, _pads(extra, n), value=0.0)
    else:
        ones = F.pad(ones, _pads(pads, n), value=0.0)
    return avg(F.pad(x, _pads(pads, n)), k, stride) / avg(ones, k, stride)


def _lrn(a: dict, x: torch.Tensor) -> torch.Tensor:
    size = int(a["size"])
    sq = (x * x).unsqueeze(1)  # (N, 1, C, ...): sum over a window of channels
    pad = [0, 0] * (x.ndim - 2) + [(size - 1) // 2, size - 1 - (size - 1) // 2]
    sq = F.pad(sq, pad)
    window = (size,) + (1,) * (x.ndim - 2)
    pool = {3: F.avg_pool2d, 4: F.avg_pool3d}.get(x.ndim)
    if pool is None:
        raise UnsupportedOnnxGraph(f"LRN on a {x.ndim}-d input is not supported")
    s = pool(sq, window, stride=1).squeeze(1) * size
    return x / (a.get("bias", 1.0) + a.get("alpha", 1e-4) / size * s) ** a.get("beta", 0.75)


def _reshape(x: torch.Tensor, shape: torch.Tensor, a: dict) -> torch.Tensor:
    s = _ints(shape)
    if not a.get("allowzero", 0):
        s = [x.shape[i] if v == 0 else v for i, v in enumerate(s)]
    return x.reshape(s)


def _flatten(a: dict, x: torch.Tensor) -> torch.Tensor:
    axis = a.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)


def _gemm(a: dict, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor | None = None
          ) -> torch.Tensor:
    A = A.T if a.get("transA", 0) else A
    B = B.T if a.get("transB", 0) else B
    y = a.get("alpha", 1.0) * (A @ B)
    return y if C is None else y + a.get("beta", 1.0) * C


def _axes(a: dict, ins: tuple, pos: int) -> list[int] | None:
    if "axes" in a:
        return list(a["axes"])
    return _ints(ins[pos]) if len(ins) > pos and ins[pos] is not None else None


def _unsqueeze(a: dict, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
    axes = _axes(a, (x, *rest), 1)
    n = x.ndim + len(axes)
    for ax in sorted(v % n for v in axes):
        x = x.unsqueeze(ax)
    return x


def _squeeze(a: dict, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
    axes = _axes(a, (x, *rest), 1)
    if axes is None:
        return x.squeeze()
    for ax in sorted((v % x.ndim for v in axes), reverse=True):
        x = x.squeeze(ax)
    return x


def _reduce(fn: Callable, a: dict, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
    axes = _axes(a, (x, *rest), 1)
    keep = bool(a.get("keepdims", 1))
    if axes is None or len(axes) == 0:
        if a.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(x.ndim))
    return fn(x, dim=[v % x.ndim for v in axes], keepdim=keep)


def _prod(x: torch.Tensor, dim: list[int], keepdim: bool) -> torch.Tensor:
    for d in sorted(dim, reverse=True):
        x = x.prod(dim=d, keepdim=keepdim)
    return x


def _slice(a: dict, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
    if "starts" in a:  # opset < 10
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    else:
        starts, ends = _ints(rest[0]), _ints(rest[1])
        axes = _ints(rest[2]) if len(rest) > 2 and rest[2] is not None else None
        steps = _ints(rest[3]) if len(rest) > 3 and rest[3] is not None else None
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        ax %= x.ndim
        dim = x.shape[ax]
        if st > 0:
            s = max(0, min(dim, s + dim if s < 0 else s))
            e = max(0, min(dim, e + dim if e < 0 else e))
            idx: list[slice] = [slice(None)] * x.ndim
            idx[ax] = slice(s, e, st)
            x = x[tuple(idx)]
        elif st < 0:  # torch slices forward only: gather the indices instead
            s = max(-1, min(dim - 1, s + dim if s < 0 else s))
            e = max(-1, min(dim - 1, e + dim if e < 0 else e))
            x = x.index_select(ax, torch.arange(s, e, st, device=x.device))
        else:
            raise UnsupportedOnnxGraph("Slice with step 0")
    return x


def _softmax(fn: Callable, a: dict, x: torch.Tensor, opset: int) -> torch.Tensor:
    if opset >= 13:
        return fn(x, dim=a.get("axis", -1))
    axis = a.get("axis", 1) % x.ndim  # old semantics: flatten to 2-d at axis
    return fn(x.reshape(*x.shape[:axis], -1), dim=-1).reshape(x.shape)


def _batchnorm(a: dict, x: torch.Tensor, s: torch.Tensor, b: torch.Tensor, m: torch.Tensor,
               v: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, m, v, s, b, training=False, eps=a.get("epsilon", 1e-5))


def _instancenorm(a: dict, x: torch.Tensor, s: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.instance_norm(x, weight=s, bias=b, eps=a.get("epsilon", 1e-5))


def _layernorm(a: dict, x: torch.Tensor, s: torch.Tensor, b: torch.Tensor | None = None
               ) -> torch.Tensor:
    axis = a.get("axis", -1) % x.ndim
    shape = x.shape[axis:]
    return F.layer_norm(x, shape, s.expand(shape), None if b is None else b.expand(shape),
                        eps=a.get("epsilon", 1e-5))


def _clip(a: dict, x: torch.Tensor, lo: torch.Tensor | None = None,
          hi: torch.Tensor | None = None) -> torch.Tensor:
    lo = a.get("min", lo)
    hi = a.get("max", hi)
    if lo is not None:
        x = torch.maximum(x, torch.as_tensor(lo, dtype=x.dtype))
    if hi is not None:
        x = torch.minimum(x, torch.as_tensor(hi, dtype=x.dtype))
    return x


def _pad(a: dict, x: torch.Tensor, pads: torch.Tensor | None = None,
         value: torch.Tensor | None = None, axes: torch.Tensor | None = None) -> torch.Tensor:
    mode = _str(a.get("mode"), "constant")
    p = list(a.get("pads")) if pads is None else _ints(pads)
    if axes is not None:  # opset 18: pads only for the listed axes
        full = [0] * (2 * x.ndim)
        ax = [v % x.ndim for v in _ints(axes)]
        for i, d in enumerate(ax):
            full[d], full[d + x.ndim] = p[i], p[i + len(ax)]
        p = full
    v = a.get("value", 0.0) if value is None or value.numel() == 0 else float(value.reshape(-1)[0])
    if mode == "constant":
        return F.pad(x, _pads(p, x.ndim), value=v)
    n = x.ndim - 2  # torch pads the spatial axes of (N, C, ...) in the other modes
    if n not in (1, 2, 3) or any(p[:2]) or any(p[x.ndim:x.ndim + 2]) or min(p) < 0:
        raise UnsupportedOnnxGraph(f"Pad mode {mode!r} with pads {p} on a {x.ndim}-d input "
                                   "(only the spatial axes of (N, C, ...) are supported)")
    return F.pad(x, _pads(p[2:x.ndim] + p[x.ndim + 2:], n),
                 mode={"edge": "replicate"}.get(mode, mode))


def _split(a: dict, x: torch.Tensor, split: torch.Tensor | None = None, *, n_out: int
           ) -> tuple[torch.Tensor, ...]:
    axis = a.get("axis", 0) % x.ndim
    sizes = a.get("split") if split is None else _ints(split)
    if not sizes:  # equal parts; opset 18's num_outputs lets the last one be smaller
        step = -(-x.shape[axis] // n_out)
        return torch.split(x, step, dim=axis)
    return torch.split(x, list(sizes), dim=axis)


def _expand(a: dict, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    s = _ints(shape)
    n = max(len(s), x.ndim)
    s = [1] * (n - len(s)) + s
    xs = [1] * (n - x.ndim) + list(x.shape)
    target = [max(p, q) if 1 in (p, q) else p for p, q in zip(xs, s, strict=True)]
    return x.reshape(xs).expand(target)


def _gather(a: dict, x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
    axis = a.get("axis", 0) % x.ndim
    flat = torch.index_select(x, axis, (i % x.shape[axis]).reshape(-1).long())
    return flat.reshape(x.shape[:axis] + i.shape + x.shape[axis + 1:])


def _depth_to_space(a: dict, x: torch.Tensor) -> torch.Tensor:
    b = int(a["blocksize"])
    n, c, h, w = x.shape
    if _str(a.get("mode"), "DCR") == "DCR":
        y = x.reshape(n, b, b, c // b ** 2, h, w).permute(0, 3, 4, 1, 5, 2)
    else:  # CRD
        y = x.reshape(n, c // b ** 2, b, b, h, w).permute(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // b ** 2, h * b, w * b)


def _space_to_depth(a: dict, x: torch.Tensor) -> torch.Tensor:
    b = int(a["blocksize"])
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


def _constant_of_shape(a: dict, shape: torch.Tensor) -> torch.Tensor:
    value = a.get("value")
    if value is None:
        return torch.zeros(_ints(shape), dtype=torch.float32)
    from onnx import numpy_helper

    v = torch.from_numpy(np.array(numpy_helper.to_array(value)).reshape(-1))
    return v.expand(_ints(shape)).clone() if _ints(shape) else v.reshape(())


def _resize(a: dict, x: torch.Tensor, *ins: torch.Tensor, opset: int, upsample: bool = False
            ) -> torch.Tensor:
    """Resize (opsets 10-19) and Upsample: nearest or (multi)linear, each axis separately, with
    ONNX's coordinate transformations and rounding rules written out (indices + weights)."""
    mode = _str(a.get("mode"), "nearest")
    if mode not in ("nearest", "linear", "bilinear", "trilinear"):
        raise UnsupportedOnnxGraph(f"Resize mode {mode!r} is not supported")
    if a.get("antialias", 0) or _str(a.get("keep_aspect_ratio_policy"), "stretch") != "stretch":
        raise UnsupportedOnnxGraph("Resize with antialias or keep_aspect_ratio_policy")
    if upsample:
        scales = list(a["scales"]) if "scales" in a else _floats(ins[0])
        sizes = None
        coord = "asymmetric"
    elif opset < 11:
        scales, sizes, coord = _floats(ins[0]), None, "asymmetric"
    else:
        scales = _floats(_given(ins, 1))
        sizes = _ints(_given(ins, 2))
        coord = _str(a.get("coordinate_transformation_mode"), "half_pixel")
    if coord == "tf_crop_and_resize":
        raise UnsupportedOnnxGraph("Resize with tf_crop_and_resize is not supported")
    axes = list(a.get("axes", range(x.ndim)))
    axes = [v % x.ndim for v in axes]
    old = opset < 11 or upsample
    rounding = "legacy" if old else _str(a.get("nearest_mode"), "round_prefer_floor")
    for j, ax in enumerate(axes):
        size_in = x.shape[ax]
        if sizes is not None:
            size_out = sizes[j]
            s = size_out / size_in
        else:
            s = scales[j]
            size_out = int(math.floor(size_in * s))
        if size_out == size_in and s == 1.0:
            continue
        o = torch.arange(size_out, dtype=torch.float64, device=x.device)
        if coord == "half_pixel":
            src = (o + 0.5) / s - 0.5
        elif coord == "pytorch_half_pixel":
            src = (o + 0.5) / s - 0.5 if size_out > 1 else torch.zeros_like(o)
        elif coord == "align_corners":
            src = o * (size_in - 1) / (size_out - 1) if size_out > 1 else torch.zeros_like(o)
        elif coord == "asymmetric":
            src = o / s
        elif coord == "tf_half_pixel_for_nn":
            src = (o + 0.5) / s
        elif coord == "half_pixel_symmetric":
            adj = size_out / (s * size_in)
            src = size_in / 2 * (1 - adj) + (o + 0.5) / s - 0.5
        else:
            raise UnsupportedOnnxGraph(f"Resize coordinate_transformation_mode {coord!r}")
        if mode == "nearest":
            if rounding == "legacy":  # Upsample / Resize-10: floor when enlarging, else ceil
                idx = torch.floor(src) if s >= 1 else torch.ceil(src)
            elif rounding == "round_prefer_floor":
                idx = torch.ceil(src - 0.5)
            elif rounding == "round_prefer_ceil":
                idx = torch.floor(src + 0.5)
            elif rounding == "floor":
                idx = torch.floor(src)
            elif rounding == "ceil":
                idx = torch.ceil(src)
            else:
                raise UnsupportedOnnxGraph(f"Resize nearest_mode {rounding!r}")
            x = x.index_select(ax, idx.clamp(0, size_in - 1).long())
        else:
            src = src.clamp(0, size_in - 1)
            lo = src.floor()
            w = (src - lo).to(x.dtype)
            lo = lo.long()
            hi = (lo + 1).clamp(max=size_in - 1)
            shape = [1] * x.ndim
            shape[ax] = size_out
            w = w.reshape(shape)
            x = x.index_select(ax, lo) * (1 - w) + x.index_select(ax, hi) * w
    return x


def _hard_sigmoid(a: dict, x: torch.Tensor) -> torch.Tensor:
    return (a.get("alpha", 0.2) * x + a.get("beta", 0.5)).clamp(0, 1)


def _nary(fn: Callable) -> Callable:
    def op(a: dict, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = fn(out, x)
        return out
    return op


def _mean(a: dict, *xs: torch.Tensor) -> torch.Tensor:
    return _nary(torch.add)(a, *xs) / len(xs)


def _where(a: dict, c: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.where(c.bool(), x, y)


def _range(a: dict, start: torch.Tensor, limit: torch.Tensor, delta: torch.Tensor
           ) -> torch.Tensor:
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


def _tile(a: dict, x: torch.Tensor, reps: torch.Tensor) -> torch.Tensor:
    return x.repeat(_ints(reps))


def _shrink(a: dict, x: torch.Tensor) -> torch.Tensor:
    lambd, bias = a.get("lambd", 0.5), a.get("bias", 0.0)
    zero = torch.zeros((), dtype=x.dtype)
    return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, zero))


def _prelu(a: dict, x: torch.Tensor, slope: torch.Tensor, *, opset: int) -> torch.Tensor:
    if opset < 7 and slope.ndim == 1 and x.ndim > 2:  # before opset 7: one slope per channel
        slope = slope.reshape(-1, *([1] * (x.ndim - 2)))
    return torch.where(x >= 0, x, x * slope)


_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32,
           7: torch.int64, 9: torch.bool, 10: torch.float16, 11: torch.float64,
           16: torch.bfloat16}


def _cast(a: dict, x: torch.Tensor) -> torch.Tensor:
    if a["to"] not in _DTYPES:
        raise UnsupportedOnnxGraph(f"Cast to ONNX data type {a['to']} is not supported")
    return x.to(_DTYPES[a["to"]])


def _div(a: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if x.is_floating_point():
        return x / y
    return torch.div(x, y, rounding_mode="trunc")


def _pow(a: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x ** y).to(x.dtype)


# op type -> f(attrs, *inputs); ops in _OPSET_OPS also get ``opset=`` (semantics changed
# between versions) and those in _MULTI ``n_out=`` (they return a tuple of outputs)
_OPS: dict[str, Callable[..., torch.Tensor | tuple[torch.Tensor, ...]]] = {
    "Identity": lambda a, x: x,
    "Dropout": lambda a, x, *r: x,
    "Add": lambda a, x, y: x + y,
    "Sub": lambda a, x, y: x - y,
    "Mul": lambda a, x, y: x * y,
    "Div": _div,
    "Pow": _pow,
    "Sum": _nary(torch.add),
    "Mean": _mean,
    "Max": _nary(torch.maximum),
    "Min": _nary(torch.minimum),
    "Neg": lambda a, x: -x,
    "Abs": lambda a, x: x.abs(),
    "Sqrt": lambda a, x: torch.sqrt(x),
    "Reciprocal": lambda a, x: 1 / x,
    "Exp": lambda a, x: torch.exp(x),
    "Log": lambda a, x: torch.log(x),
    "Floor": lambda a, x: torch.floor(x),
    "Ceil": lambda a, x: torch.ceil(x),
    "Erf": lambda a, x: torch.erf(x),
    "Sign": lambda a, x: torch.sign(x),
    "Shrink": _shrink,
    "Equal": lambda a, x, y: x == y,
    "Less": lambda a, x, y: x < y,
    "LessOrEqual": lambda a, x, y: x <= y,
    "Greater": lambda a, x, y: x > y,
    "GreaterOrEqual": lambda a, x, y: x >= y,
    "Not": lambda a, x: ~x,
    "And": lambda a, x, y: x & y,
    "Or": lambda a, x, y: x | y,
    "Where": _where,
    "MatMul": lambda a, x, y: x @ y,
    "Gemm": _gemm,
    "Relu": lambda a, x: F.relu(x),
    "LeakyRelu": lambda a, x: F.leaky_relu(x, a.get("alpha", 0.01)),
    "Elu": lambda a, x: F.elu(x, a.get("alpha", 1.0)),
    "Selu": lambda a, x: a.get("gamma", 1.0507009873554805) * torch.where(
        x > 0, x, a.get("alpha", 1.6732632423543772) * torch.expm1(x)),
    "Sigmoid": lambda a, x: torch.sigmoid(x),
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": lambda a, x: x * (x / 6 + 0.5).clamp(0, 1),
    "Tanh": lambda a, x: torch.tanh(x),
    "Softplus": lambda a, x: F.softplus(x),
    "Softsign": lambda a, x: x / (1 + x.abs()),
    "Mish": lambda a, x: x * torch.tanh(F.softplus(x)),
    "Gelu": lambda a, x: F.gelu(x, approximate=_str(a.get("approximate"), "none")),
    "Clip": _clip,
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": lambda a, x: _pool("MaxPool", a, x),
    "AveragePool": lambda a, x: _pool("AveragePool", a, x),
    "GlobalAveragePool": lambda a, x: x.mean(dim=tuple(range(2, x.ndim)), keepdim=True),
    "GlobalMaxPool": lambda a, x: x.amax(dim=tuple(range(2, x.ndim)), keepdim=True),
    "LRN": _lrn,
    "BatchNormalization": _batchnorm,
    "InstanceNormalization": _instancenorm,
    "LayerNormalization": _layernorm,
    "Flatten": _flatten,
    "Reshape": lambda a, x, s: _reshape(x, s, a),
    "Transpose": lambda a, x: x.permute(*(a.get("perm") or reversed(range(x.ndim)))),
    "Concat": lambda a, *xs: torch.cat(xs, dim=a["axis"]),
    "Shape": lambda a, x: torch.tensor(x.shape[a.get("start", 0):a.get("end", x.ndim)],
                                       dtype=torch.int64),
    "Size": lambda a, x: torch.tensor(x.numel(), dtype=torch.int64),
    "ConstantOfShape": _constant_of_shape,
    "Range": _range,
    "Expand": _expand,
    "Tile": _tile,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Cast": _cast,
    "CastLike": lambda a, x, like: x.to(like.dtype),
    "Slice": _slice,
    "Pad": _pad,
    "DepthToSpace": _depth_to_space,
    "SpaceToDepth": _space_to_depth,
    "ReduceMean": lambda a, x, *r: _reduce(torch.mean, a, x, *r),
    "ReduceSum": lambda a, x, *r: _reduce(torch.sum, a, x, *r),
    "ReduceMax": lambda a, x, *r: _reduce(torch.amax, a, x, *r),
    "ReduceMin": lambda a, x, *r: _reduce(torch.amin, a, x, *r),
    "ReduceProd": lambda a, x, *r: _reduce(_prod, a, x, *r),
}
_OPSET_OPS: dict[str, Callable[..., torch.Tensor]] = {
    "Softmax": lambda a, x, opset: _softmax(torch.softmax, a, x, opset),
    "LogSoftmax": lambda a, x, opset: _softmax(torch.log_softmax, a, x, opset),
    "PRelu": _prelu,
    "Resize": lambda a, x, *r, opset: _resize(a, x, *r, opset=opset),
    "Upsample": lambda a, x, *r, opset: _resize(a, x, *r, opset=opset, upsample=True),
}
_MULTI: dict[str, Callable[..., tuple[torch.Tensor, ...]]] = {"Split": _split}


_ALL_OPS = {*_OPS, *_OPSET_OPS, *_MULTI, "Constant"}
#: ops whose output does not carry the batch even when an input does
_NOT_BATCHED = frozenset({"Shape", "Size", "ConstantOfShape", "Range"})


def _constant(a: dict) -> np.ndarray:
    from onnx import numpy_helper

    if "value" in a:
        return np.array(numpy_helper.to_array(a["value"]))
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return np.array(a[key], dtype=dtype)
    raise UnsupportedOnnxGraph(f"Constant node with {sorted(a)} (sparse or string values) is "
                               "not supported")


class OnnxTorchGraph(nn.Module):
    """An ONNX graph run by torch operators (differentiable by torch autograd).

    ``forward(*inputs)`` returns the first output, :meth:`run` all of them. Raises
    :class:`UnsupportedOnnxGraph` at construction naming every operator it cannot run
    (``SUPPORTED`` lists those it can). Nodes whose inputs are all constants (weights written as
    ``ConstantOfShape``, shape arithmetic on initializers) are evaluated once, at construction.

    A graph whose input declares a fixed batch size B (common in older exports) runs on any
    batch: the declared size is ignored, and a Reshape target that spells out B as its first
    entry gets the actual batch size instead, but only when its input carries the batch in
    dim 0 (tracked from the graph's first input through every node whose output keeps dim 0
    equal to the batch size; ``Shape``-derived targets are already right).
    """

    SUPPORTED = tuple(sorted(_ALL_OPS))

    def __init__(self, model: Any) -> None:
        super().__init__()
        onnx = require("onnx")
        from onnx import numpy_helper

        graph = model.graph
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                         default=13)
        missing = sorted({n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}"
                          for n in graph.node
                          if n.domain not in ("", "ai.onnx") or n.op_type not in _ALL_OPS})
        if missing:
            raise UnsupportedOnnxGraph(f"operator{'s' if len(missing) > 1 else ''} not covered "
                                       f"by the torch interpreter: {', '.join(missing)}")
        init_names = {t.name for t in graph.initializer}
        graph_inputs = [i for i in graph.input if i.name not in init_names]
        self.input_names = [i.name for i in graph_inputs]
        self.output_names = [o.name for o in graph.output]
        self.batch_size: int | None = None  # the first input's declared (fixed) batch size
        if graph_inputs and graph_inputs[0].type.tensor_type.shape.dim:
            d0 = graph_inputs[0].type.tensor_type.shape.dim[0]
            self.batch_size = int(d0.dim_value) if d0.HasField("dim_value") and d0.dim_value > 0 \
                else None
        consts: dict[str, torch.Tensor] = {
            t.name: torch.from_numpy(np.array(numpy_helper.to_array(t))) for t in graph.initializer}
        self._nodes: list[tuple[str, list[str], list[str], dict]] = []
        for node in graph.node:
            a = _attrs(node, onnx)
            if node.op_type == "Constant":
                consts[node.output[0]] = torch.from_numpy(_constant(a))
                continue
            if all(i == "" or i in consts for i in node.input) and node.input:
                try:
                    outs = self._call(node.op_type, a,
                                      [consts[i] if i else None for i in node.input],
                                      len(node.output))
                except UnsupportedOnnxGraph:
                    raise
                except Exception as exc:  # noqa: BLE001 - reported as a graph we cannot run
                    raise UnsupportedOnnxGraph(f"{node.op_type} node {node.name!r} on constant "
                                               f"inputs failed: {type(exc).__name__}: {exc}"
                                               ) from exc
                for name, t in zip(node.output, outs, strict=False):
                    consts[name] = t.detach()
                continue
            self._nodes.append((node.op_type, list(node.input), list(node.output), a))
        needed = {i for _, ins, _, _ in self._nodes for i in ins} | set(self.output_names)
        self._consts: dict[str, str] = {}
        for k, (name, t) in enumerate(consts.items()):
            if name in needed:
                self.register_buffer(f"c{k}", t.contiguous(), persistent=False)
                self._consts[name] = f"c{k}"

    def _call(self, op: str, a: dict, args: list, n_out: int) -> tuple[torch.Tensor, ...]:
        if op in _OPSET_OPS:
            out = _OPSET_OPS[op](a, *args, opset=self.opset)
        elif op in _MULTI:
            out = _MULTI[op](a, *args, n_out=n_out)
        else:
            out = _OPS[op](a, *args)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def _rebatch(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """A Reshape target with the declared batch size first, for a batch-carrying input of
        another batch size: the actual one, if the rest of the target fits one sample."""
        target = _ints(shape)
        if not target or target[0] != self.batch_size or x.shape[0] == self.batch_size:
            return shape
        per_sample = x.numel() // max(x.shape[0], 1)
        rest = [x.shape[i + 1] if v == 0 and i + 1 < x.ndim else v
                for i, v in enumerate(target[1:])]
        known = int(np.prod([v for v in rest if v != -1], dtype=np.int64))
        fits = known == per_sample if -1 not in rest else known > 0 and per_sample % known == 0
        return torch.tensor([x.shape[0], *target[1:]], dtype=torch.int64) if fits else shape

    def run(self, *xs: torch.Tensor) -> list[torch.Tensor]:
        """All graph outputs for the graph inputs ``xs`` (in the graph's input order)."""
        if len(xs) != len(self.input_names):
            raise ValueError(f"the graph takes {len(self.input_names)} input(s) "
                             f"{self.input_names}; got {len(xs)}")
        env: dict[str, torch.Tensor | None] = {"": None}
        for name, buf in self._consts.items():
            env[name] = getattr(self, buf)
        env.update(zip(self.input_names, xs, strict=True))
        n = xs[0].shape[0] if xs and xs[0].ndim else None
        track = self.batch_size is not None and n is not None and n != self.batch_size
        batched = {self.input_names[0]} if track else set()
        for op, ins, outs, a in self._nodes:
            args = [env[i] for i in ins]
            if track and op == "Reshape" and ins[0] in batched:
                args[1] = self._rebatch(args[0], args[1])
            result = self._call(op, a, args, len(outs))
            for name, t in zip(outs, result, strict=False):
                env[name] = t
                if (track and op not in _NOT_BATCHED and t.ndim >= 1 and t.shape[0] == n
                        and any(i in batched for i in ins)):
                    batched.add(name)
        return [env[o] for o in self.output_names]

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.run(*xs)[0]


def _as_logits(z: torch.Tensor) -> torch.Tensor:
    """(N, K, 1, ..., 1) -> (N, K), as classifiers ending in a 1x1 convolution return them; any
    other shape is left for the shape check that names it."""
    if z.ndim > 2 and all(s == 1 for s in z.shape[2:]):
        return z.reshape(z.shape[0], z.shape[1])
    return z


class OnnxClassifier(Classifier):
    """An ONNX classifier: onnxruntime computes logits, a torch copy of the graph gradients.

    Args:
        model: a path to an ``.onnx`` file, its bytes, or an ``onnx.ModelProto``.
        gradients: build the torch copy for gradients (default True). If it cannot be built or
            does not match onnxruntime, the model is used label-only with a warning.
        providers: onnxruntime execution providers (default CPU).
        rtol: largest allowed ``max|torch - onnxruntime| / max(1, max|onnxruntime|)`` on the
            first batch.
        bounds, preprocessing, device, batch_size: as for :func:`robcurves.wrap`; inputs are
            passed to the graph in robcurves' layout (NCHW for images).

    Attributes:
        label_only: True when no gradients are available (see the warning).
        torch_graph: the :class:`OnnxTorchGraph` used for gradients, or None.
        fixed_batch: the batch size the graph declares, or None; batches of another size go
            to onnxruntime in chunks of it (the last one padded), to the torch copy whole.
    """

    def __init__(self, model: str | os.PathLike | bytes | Any, *, gradients: bool = True,
                 providers: list[str] | None = None, rtol: float = 1e-4,
                 bounds: tuple[float, float] = (0.0, 1.0), preprocessing: dict | None = None,
                 device: str | None = None, batch_size: int = 256,
                 num_classes: int | None = None) -> None:
        ort = require("onnxruntime")
        onnx = require("onnx")
        super().__init__(bounds=bounds, device=device, batch_size=batch_size,
                         num_classes=num_classes)
        if isinstance(model, (str, os.PathLike)):
            proto = onnx.load(str(Path(model)))
        elif isinstance(model, (bytes, bytearray)):
            proto = onnx.load_from_string(bytes(model))
        elif isinstance(model, onnx.ModelProto):
            proto = model
        else:
            raise TypeError(f"expected an .onnx path, bytes or onnx.ModelProto; got "
                            f"{type(model).__name__}")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no notes on unused initializers
        self.session = ort.InferenceSession(proto.SerializeToString(), options,
                                            providers=providers or ["CPUExecutionProvider"])
        ins = self.session.get_inputs()
        if len(ins) != 1:
            raise ValueError(f"the ONNX model must have one input; it has {len(ins)}: "
                             f"{[i.name for i in ins]}")
        self.input_name = ins[0].name
        self.output_name = self.session.get_outputs()[0].name
        d0 = ins[0].shape[0] if ins[0].shape else None
        #: the batch size the graph declares (onnxruntime then gets one such chunk at a time)
        self.fixed_batch: int | None = d0 if isinstance(d0, int) and d0 > 0 else None
        self.pre = Preprocess(preprocessing, self.device)
        self.rtol = float(rtol)
        self.torch_graph: OnnxTorchGraph | None = None
        self._checked = False
        self.label_only = True
        if gradients:
            try:
                self.torch_graph = OnnxTorchGraph(proto).to(self.device)
                self.label_only = False
            except UnsupportedOnnxGraph as exc:
                self._fallback(str(exc))

    def _fallback(self, why: str) -> None:
        self.torch_graph = None
        self.label_only = True
        warnings.warn(f"ONNX model without gradients ({why}; please report it to the robcurves "
                      f"issue tracker): {LABEL_ONLY_HINT}", UserWarning, stacklevel=3)

    def _runtime(self, x: torch.Tensor) -> torch.Tensor:
        xs = np.ascontiguousarray(x.detach().to(torch.float32).cpu().numpy())
        b = self.fixed_batch
        if b is None or xs.shape[0] == b:
            z = self.session.run([self.output_name], {self.input_name: xs})[0]
        else:  # the graph declares batch size b: run chunks of b (the last one padded)
            n = xs.shape[0]
            if n % b:
                xs = np.concatenate([xs, np.repeat(xs[-1:], b - n % b, axis=0)])
            z = np.concatenate([self.session.run([self.output_name],
                                                 {self.input_name: xs[i:i + b]})[0]
                                for i in range(0, xs.shape[0], b)])[:n]
        return _as_logits(torch.from_numpy(np.asarray(z, dtype=np.float32)).to(self.device))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        need_grad = torch.is_grad_enabled() and x.requires_grad
        ref = None
        if not self._checked and self.torch_graph is not None:
            self._checked = True
            with torch.no_grad():
                ref = self._runtime(x)
                try:
                    mine = _as_logits(self.torch_graph(x.to(torch.float32)))
                    err = float((mine - ref).abs().max()) / max(1.0, float(ref.abs().max()))
                    why = (f"its torch copy differs from onnxruntime by {err:.3g} (relative)"
                           if not err <= self.rtol else None)
                except Exception as exc:  # noqa: BLE001 - any failure of the copy
                    why = f"its torch copy failed: {type(exc).__name__}: {exc}"
            if why is not None:
                self._fallback(why)
        if need_grad:
            if self.torch_graph is None:
                raise TypeError(f"this ONNX model has no gradients, so gradient attacks cannot "
                                f"run on it: {LABEL_ONLY_HINT}")
            return _as_logits(self.torch_graph(x.to(torch.float32)))
        return self._runtime(x) if ref is None else ref
