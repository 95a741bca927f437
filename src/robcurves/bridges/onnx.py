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
warning says that only decision-based attacks apply and that the curve is then looser.
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


def _ints(t: torch.Tensor | None) -> list[int] | None:
    return None if t is None else [int(v) for v in t.reshape(-1).tolist()]


def _pads(pads: list[int] | None, n: int) -> list[int]:
    """ONNX pads ``[b1, b2, ..., e1, e2, ...]`` -> F.pad order (last axis first)."""
    pads = pads or [0] * (2 * n)
    out: list[int] = []
    for i in reversed(range(n)):
        out += [pads[i], pads[i + n]]
    return out


def _conv(a: dict, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None
          ) -> torch.Tensor:
    n = w.ndim - 2
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        raise UnsupportedOnnxGraph(f"Conv auto_pad={a['auto_pad']!r} is not supported")
    x = F.pad(x, _pads(a.get("pads"), n))
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
    return conv(x, w, b, stride=a.get("strides", 1), dilation=a.get("dilations", 1),
                groups=a.get("group", 1))


def _pool(kind: str, a: dict, x: torch.Tensor) -> torch.Tensor:
    k = a["kernel_shape"]
    n = len(k)
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        raise UnsupportedOnnxGraph(f"{kind} auto_pad={a['auto_pad']!r} is not supported")
    if a.get("ceil_mode", 0) or a.get("dilations", [1] * n) != [1] * n:
        raise UnsupportedOnnxGraph(f"{kind} with ceil_mode or dilations is not supported")
    pads = a.get("pads", [0] * (2 * n))
    stride = a.get("strides", [1] * n)
    if kind == "MaxPool":
        x = F.pad(x, _pads(pads, n), value=-math.inf)
        return {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n](x, k, stride)
    if any(pads) and not a.get("count_include_pad", 0):
        ones = F.pad(torch.ones_like(x[:1, :1]), _pads(pads, n))
        x = F.pad(x, _pads(pads, n))
        avg = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
        return avg(x, k, stride) / avg(ones, k, stride)
    x = F.pad(x, _pads(pads, n))
    return {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n](x, k, stride)


def _reshape(x: torch.Tensor, shape: torch.Tensor, a: dict) -> torch.Tensor:
    s = _ints(shape)
    if not a.get("allowzero", 0):
        s = [x.shape[i] if v == 0 else v for i, v in enumerate(s)]
    return x.reshape(s)


def _flatten(x: torch.Tensor, a: dict) -> torch.Tensor:
    axis = a.get("axis", 1) % max(x.ndim, 1)
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)


def _gemm(a: dict, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor | None = None
          ) -> torch.Tensor:
    A = A.T if a.get("transA", 0) else A
    B = B.T if a.get("transB", 0) else B
    y = a.get("alpha", 1.0) * (A @ B)
    return y if C is None else y + a.get("beta", 1.0) * C


def _axes(a: dict, ins: list, pos: int) -> list[int] | None:
    if "axes" in a:
        return list(a["axes"])
    return _ints(ins[pos]) if len(ins) > pos and ins[pos] is not None else None


def _unsqueeze(a: dict, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
    axes = sorted(v % (x.ndim + len(_axes(a, [x, *rest], 1))) for v in _axes(a, [x, *rest], 1))
    for ax in axes:
        x = x.unsqueeze(ax)
    return x


def _squeeze(a: dict, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
    axes = _axes(a, [x, *rest], 1)
    if axes is None:
        return x.squeeze()
    for ax in sorted((v % x.ndim for v in axes), reverse=True):
        x = x.squeeze(ax)
    return x


def _reduce(fn: Callable, a: dict, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
    axes = _axes(a, [x, *rest], 1)
    keep = bool(a.get("keepdims", 1))
    if axes is None or len(axes) == 0:
        if a.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(x.ndim))
    return fn(x, dim=[v % x.ndim for v in axes], keepdim=keep)


def _slice(a: dict, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
    if "starts" in a:  # opset < 10
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    else:
        starts, ends = _ints(rest[0]), _ints(rest[1])
        axes = _ints(rest[2]) if len(rest) > 2 and rest[2] is not None else None
        steps = _ints(rest[3]) if len(rest) > 3 and rest[3] is not None else None
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    idx: list[slice] = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        if st <= 0:
            raise UnsupportedOnnxGraph("Slice with a non-positive step is not supported")
        dim = x.shape[ax]
        s = max(0, min(dim, s + dim if s < 0 else s))
        e = max(0, min(dim, e + dim if e < 0 else e))
        idx[ax % x.ndim] = slice(s, e, st)
    return x[tuple(idx)]


def _softmax(fn: Callable, a: dict, x: torch.Tensor, opset: int) -> torch.Tensor:
    if opset >= 13:
        return fn(x, dim=a.get("axis", -1))
    axis = a.get("axis", 1) % x.ndim  # old semantics: flatten to 2-d at axis
    return fn(x.reshape(*x.shape[:axis], -1), dim=-1).reshape(x.shape)


def _batchnorm(a: dict, x: torch.Tensor, s: torch.Tensor, b: torch.Tensor, m: torch.Tensor,
               v: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, m, v, s, b, training=False, eps=a.get("epsilon", 1e-5))


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
         value: torch.Tensor | None = None, *rest: torch.Tensor) -> torch.Tensor:
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if rest and rest[0] is not None:
        raise UnsupportedOnnxGraph("Pad with an axes input is not supported")
    p = a.get("pads") if pads is None else _ints(pads)
    v = a.get("value", 0.0) if value is None else float(value.reshape(-1)[0])
    if mode != "constant":
        return F.pad(x, _pads(p, x.ndim), mode={"edge": "replicate"}.get(mode, mode))
    return F.pad(x, _pads(p, x.ndim), value=v)


_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 6: torch.int32, 7: torch.int64,
           9: torch.bool, 10: torch.float16, 11: torch.float64}

# op type -> f(attrs, *inputs); ``opset`` passed where semantics changed between versions
_OPS: dict[str, Callable[..., torch.Tensor]] = {
    "Identity": lambda a, x: x,
    "Dropout": lambda a, x, *r: x,
    "Add": lambda a, x, y: x + y,
    "Sub": lambda a, x, y: x - y,
    "Mul": lambda a, x, y: x * y,
    "Div": lambda a, x, y: x / y if x.is_floating_point() else torch.div(x, y,
                                                                          rounding_mode="trunc"),
    "Neg": lambda a, x: -x,
    "Pow": lambda a, x, y: x ** y,
    "Sqrt": lambda a, x: torch.sqrt(x),
    "Exp": lambda a, x: torch.exp(x),
    "Log": lambda a, x: torch.log(x),
    "Abs": lambda a, x: x.abs(),
    "MatMul": lambda a, x, y: x @ y,
    "Gemm": _gemm,
    "Relu": lambda a, x: F.relu(x),
    "LeakyRelu": lambda a, x: F.leaky_relu(x, a.get("alpha", 0.01)),
    "Elu": lambda a, x: F.elu(x, a.get("alpha", 1.0)),
    "Sigmoid": lambda a, x: torch.sigmoid(x),
    "Tanh": lambda a, x: torch.tanh(x),
    "Softplus": lambda a, x: F.softplus(x),
    "Erf": lambda a, x: torch.erf(x),
    "Clip": _clip,
    "Conv": _conv,
    "MaxPool": lambda a, x: _pool("MaxPool", a, x),
    "AveragePool": lambda a, x: _pool("AveragePool", a, x),
    "GlobalAveragePool": lambda a, x: x.mean(dim=tuple(range(2, x.ndim)), keepdim=True),
    "GlobalMaxPool": lambda a, x: x.amax(dim=tuple(range(2, x.ndim)), keepdim=True),
    "BatchNormalization": _batchnorm,
    "Flatten": lambda a, x: _flatten(x, a),
    "Reshape": lambda a, x, s: _reshape(x, s, a),
    "Transpose": lambda a, x: x.permute(*(a.get("perm") or reversed(range(x.ndim)))),
    "Concat": lambda a, *xs: torch.cat(xs, dim=a["axis"]),
    "Shape": lambda a, x: torch.tensor(x.shape[a.get("start", 0):a.get("end", x.ndim)],
                                       dtype=torch.int64),
    "Gather": lambda a, x, i: torch.index_select(
        x, a.get("axis", 0) % x.ndim, (i % x.shape[a.get("axis", 0)]).reshape(-1)
    ).reshape(x.shape[:a.get("axis", 0) % x.ndim] + i.shape
              + x.shape[a.get("axis", 0) % x.ndim + 1:]),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Cast": lambda a, x: x.to(_DTYPES[a["to"]]),
    "Slice": _slice,
    "Pad": _pad,
    "ReduceMean": lambda a, x, *r: _reduce(torch.mean, a, x, *r),
    "ReduceSum": lambda a, x, *r: _reduce(torch.sum, a, x, *r),
    "ReduceMax": lambda a, x, *r: _reduce(torch.amax, a, x, *r),
}
_OPSET_OPS = {
    "Softmax": lambda a, x, opset: _softmax(torch.softmax, a, x, opset),
    "LogSoftmax": lambda a, x, opset: _softmax(torch.log_softmax, a, x, opset),
}


class OnnxTorchGraph(nn.Module):
    """An ONNX graph run by torch operators (differentiable; single input, first output).

    Raises :class:`UnsupportedOnnxGraph` at construction naming any operator it cannot run.
    """

    SUPPORTED = tuple(sorted({*_OPS, *_OPSET_OPS, "Constant"}))

    def __init__(self, model: Any) -> None:
        super().__init__()
        onnx = require("onnx")
        from onnx import numpy_helper

        graph = model.graph
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                         default=13)
        missing = sorted({n.op_type for n in graph.node if n.domain not in ("", "ai.onnx")
                          or (n.op_type not in _OPS and n.op_type not in _OPSET_OPS
                              and n.op_type != "Constant")})
        if missing:
            raise UnsupportedOnnxGraph(f"operators not covered by the torch interpreter: "
                                       f"{', '.join(missing)}")
        init_names = {t.name for t in graph.initializer}
        inputs = [i.name for i in graph.input if i.name not in init_names]
        if len(inputs) != 1:
            raise UnsupportedOnnxGraph(f"the model must have exactly one input; it has "
                                       f"{len(inputs)}: {inputs}")
        self.input_name = inputs[0]
        self.output_name = graph.output[0].name
        self._consts: dict[str, str] = {}
        for k, t in enumerate(graph.initializer):
            arr = np.array(numpy_helper.to_array(t))
            self.register_buffer(f"c{k}", torch.from_numpy(arr), persistent=False)
            self._consts[t.name] = f"c{k}"
        self._nodes: list[tuple[str, list[str], list[str], dict]] = []
        for j, node in enumerate(graph.node):
            a = _attrs(node, onnx)
            if node.op_type == "Constant":
                if "value" not in a:
                    raise UnsupportedOnnxGraph(f"Constant node without a tensor value: "
                                               f"{sorted(a)}")
                arr = np.array(numpy_helper.to_array(a["value"]))
                self.register_buffer(f"k{j}", torch.from_numpy(arr), persistent=False)
                self._consts[node.output[0]] = f"k{j}"
                continue
            self._nodes.append((node.op_type, list(node.input), list(node.output), a))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor | None] = {"": None, self.input_name: x}
        for name, buf in self._consts.items():
            env[name] = getattr(self, buf)
        for op, ins, outs, a in self._nodes:
            args = [env[i] for i in ins]
            if op in _OPSET_OPS:
                out = _OPSET_OPS[op](a, *args, self.opset)
            else:
                out = _OPS[op](a, *args)
            env[outs[0]] = out
        return env[self.output_name]


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
        self.session = ort.InferenceSession(proto.SerializeToString(),
                                            providers=providers or ["CPUExecutionProvider"])
        ins = self.session.get_inputs()
        if len(ins) != 1:
            raise ValueError(f"the ONNX model must have one input; it has {len(ins)}: "
                             f"{[i.name for i in ins]}")
        self.input_name = ins[0].name
        self.output_name = self.session.get_outputs()[0].name
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
        warnings.warn(f"ONNX model without gradients ({why}): {LABEL_ONLY_HINT}", UserWarning,
                      stacklevel=3)

    def _runtime(self, x: torch.Tensor) -> torch.Tensor:
        xs = np.ascontiguousarray(x.detach().to(torch.float32).cpu().numpy())
        z = self.session.run([self.output_name], {self.input_name: xs})[0]
        return torch.from_numpy(np.asarray(z, dtype=np.float32)).to(self.device)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        need_grad = torch.is_grad_enabled() and x.requires_grad
        if not self._checked and self.torch_graph is not None:
            self._checked = True
            with torch.no_grad():
                ref = self._runtime(x)
                try:
                    mine = self.torch_graph(x.to(torch.float32))
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
            return self.torch_graph(x.to(torch.float32))
        return self._runtime(x)
