"""ONNX graphs nobody here wrote, run through robcurves' torch copy of the graph.

All graphs come from the ``onnx`` wheel itself (``onnx/backend/test/data``):

* ``light/``: the model zoo's AlexNet, DenseNet-121, Inception v1/v2, ResNet-50, ShuffleNet,
  SqueezeNet, VGG-19 and ZFNet-512 with their weights written as ``ConstantOfShape`` (every
  weight 0.02) and a fixed batch size of 1. As shipped, the torch copy must reproduce the
  stored output on the input the ONNX test runner feeds them; with random weights put in
  (constant weights make every class score equal), its logits must equal onnxruntime's for a
  batch of 2, its gradient must be the derivative of onnxruntime's function, and an l2 attack
  must find a verified adversarial.
* ``pytorch-converted/``, ``pytorch-operator/``, ``simple/`` (and ``node/`` where the wheel ships
  it): every case whose operators the interpreter claims, against the stored outputs.
* Single operators the suites lack (Resize, LRN, DepthToSpace...): the interpreter against
  onnxruntime and ``onnx.reference.ReferenceEvaluator``, two independent implementations.
"""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import robcurves
from robcurves.attacks._core import margin_loss

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from robcurves.bridges.onnx import OnnxTorchGraph, UnsupportedOnnxGraph  # noqa: E402

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
ZOO = sorted(p.stem.removeprefix("light_") for p in (DATA / "light").glob("light_*.onnx"))
#: the zoo graphs whose wrap + check + attack take over ~10 s on one core (big dense layers or
#: over 50 convolutions at 224x224)
SLOW = {"bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "vgg19",
        "zfnet512"}
SUITES = ("pytorch-converted", "pytorch-operator", "simple", "node")


def test_the_wheel_ships_the_nine_zoo_graphs():
    assert ZOO == ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
                   "shufflenet", "squeezenet", "vgg19", "zfnet512"]


def _ort(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _random_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """The graph with each ``ConstantOfShape`` weight replaced by random values (He-scaled for
    convolutions and dense layers, near the identity for batch norms), and the last weighted
    layer scaled so that the logits have standard deviation ~3 on uniform noise (no softmax
    saturation: the comparisons and the attack then mean something)."""
    rng = np.random.default_rng(seed)
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    users: dict[str, list] = {}
    for n in g.node:
        for k, i in enumerate(n.input):
            users.setdefault(i, []).append((n, k))

    def role(name: str) -> tuple:
        n, k = users[name][0]
        return role(n.output[0]) if n.op_type == "Unsqueeze" else (n, k)

    keep, new = [], []
    for n in g.node:
        if n.op_type != "ConstantOfShape" or n.input[0] not in inits:
            keep.append(n)
            continue
        shape = tuple(int(v) for v in inits[n.input[0]])
        user, k = role(n.output[0])
        # float32 throughout, scaled in place (VGG-19's weights are 0.5 GB in float32)
        v = rng.standard_normal(shape, dtype=np.float32)
        if user.op_type == "Conv" and k == 1:
            v *= np.float32(np.sqrt(2 / np.prod(shape[1:])))
        elif user.op_type == "Gemm" and k == 1:
            trans_b = any(a.name == "transB" and a.i for a in user.attribute)
            v *= np.float32(np.sqrt(2 / shape[1 if trans_b else 0]))
        elif (user.op_type == "BatchNormalization" and k in (1, 4)) or user.op_type == "Mul":
            v = 1 + 0.1 * (np.abs(v) if k == 4 else v)
        else:
            v *= np.float32(0.1)
        assert v.dtype == np.float32
        new.append(numpy_helper.from_array(v, n.output[0]))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(keep)
    out.graph.initializer.extend(new)
    # the logits: the softmax input, else the graph output; the last Gemm/Conv before them
    producer = {o: n for n in out.graph.node for o in n.output}
    soft = [n for n in out.graph.node if n.op_type == "Softmax"]
    logits = soft[0].input[0] if soft else out.graph.output[0].name
    node = producer[logits]
    while node.op_type not in ("Gemm", "Conv"):
        node = producer[node.input[0]]
    out.graph.output.insert(0, helper.make_empty_tensor_value_info(logits))  # a probe
    x = np.random.default_rng(seed + 1).random((1, 3, 224, 224), dtype=np.float32)
    with torch.no_grad():
        z = OnnxTorchGraph(out)(torch.from_numpy(x))
    del out.graph.output[0]
    scale = np.float32(3.0 / float(z.std()))
    for t in out.graph.initializer:
        if t.name in node.input[1:]:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * scale, t.name))
    return out


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in ZOO])
def test_zoo_graph_has_gradients_matching_onnxruntime(name):
    path = DATA / "light" / f"light_{name}.onnx"
    shipped = onnx.load(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to label-only
        clf = robcurves.wrap(str(path))
    assert not clf.label_only and clf.torch_graph is not None
    # as shipped: the stored output for the input the ONNX test runner generates (arange / n)
    expected = numpy_helper.to_array(onnx.load_tensor(str(path.with_name(
        f"light_{name}_output_0.pb"))))
    x0 = (np.arange(3 * 224 * 224) / (3 * 224 * 224)).astype(np.float32).reshape(1, 3, 224, 224)
    with torch.no_grad():
        got = clf.torch_graph(torch.from_numpy(x0)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=0)
    del clf
    gc.collect()  # VGG-19 holds 0.5 GB of weights in each of onnxruntime and torch

    model = _random_weights(shipped)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = robcurves.wrap(model)
    del model
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    ref = clf.predict_logits(x)  # onnxruntime, one point at a time (declared batch size 1)
    assert ref.shape == (2, 1000)
    with torch.no_grad():
        mine = clf.torch_graph(x).reshape(2, 1000)  # the torch copy, the whole batch at once
    assert float((mine - ref).abs().max() / ref.abs().max()) <= 1e-4
    assert not torch.equal(ref[0], ref[1])  # two images, two different outputs
    y = ref.argmax(1)
    _, _, grad = clf.value_and_grad(x[:1], y[:1], margin_loss)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # the torch gradient is the derivative of onnxruntime's function (along the gradient)
    g = grad / grad.norm()
    h = 1e-2
    plus, minus = (float(margin_loss(clf.predict_logits(x[:1] + s * h * g), y[:1]))
                   for s in (1, -1))
    slope = (plus - minus) / (2 * h)
    assert slope == pytest.approx(float(grad.norm()), rel=0.1)

    if name == "vgg19":
        pytest.skip("the attack on VGG-19 (20 GFLOPs per forward) takes minutes on one core; "
                    "its logits and gradient are checked above")
    d = robcurves.distances(clf, x[:1], y[:1], norm="l2", attack="fmn", steps=10,
                            return_adversarials=True)
    assert np.isfinite(d.distances[0]) and d.distances[0] > 0 and d.cost["rejected"] == 0
    adv = torch.from_numpy(d.adversarials[:1])
    assert int(clf.predict(adv)[0]) != int(y[0])
    assert float((adv - x[:1]).norm()) == pytest.approx(d.distances[0], rel=1e-5)


def _cases():
    """(suite, case, model path) of every wheel test case whose operators are all claimed."""
    out = []
    for suite in SUITES:
        for path in sorted((DATA / suite).glob("*/model.onnx")):
            model = onnx.load(str(path), load_external_data=False)
            if all(n.domain in ("", "ai.onnx") and n.op_type in OnnxTorchGraph.SUPPORTED
                   for n in model.graph.node):
                out.append(pytest.param(path, id=f"{suite}/{path.parent.name}"))
    return out


@pytest.mark.parametrize("path", _cases())
def test_wheel_operator_case(path):
    model = onnx.load(str(path))
    data = path.parent / "test_data_set_0"
    inputs = [numpy_helper.to_array(onnx.load_tensor(str(f)))
              for f in sorted(data.glob("input_*.pb"))]
    stored = [numpy_helper.to_array(onnx.load_tensor(str(f)))
              for f in sorted(data.glob("output_*.pb"))]
    if not stored:  # no stored output: the reference implementation is the oracle
        stored = ReferenceEvaluator(model).run(
            None, {i.name: v for i, v in zip(OnnxTorchGraph(model).input_names, inputs,
                                             strict=True)})
    with torch.no_grad():
        got = OnnxTorchGraph(model).run(*(torch.from_numpy(np.array(v)) for v in inputs))
    assert len(got) == len(stored)
    for mine, want in zip(got, stored, strict=True):
        assert mine.numpy().dtype == want.dtype
        np.testing.assert_allclose(mine.numpy(), want, rtol=1e-4, atol=1e-5)


def test_every_claimed_operator_is_tested():
    """Each operator the interpreter claims runs in a wheel case above or a single-operator
    case below (``Constant`` in the suites' graphs)."""
    in_suites = {n.op_type for p in _cases() for n in onnx.load(
        str(p.values[0]), load_external_data=False).graph.node}
    single = {spec[0] for spec in _NODE_CASES.values()}
    assert set(OnnxTorchGraph.SUPPORTED) - in_suites - single == set()


# ---- single operators the suites lack, against onnxruntime and the reference evaluator ----

def _graph(op: str, inputs: dict, attrs: dict | None = None, opset: int = 13,
           consts: dict | None = None, n_out: int = 1) -> onnx.ModelProto:
    consts = consts or {}
    names = [*inputs, *consts]
    node = helper.make_node(op, names, [f"y{i}" for i in range(n_out)], **(attrs or {}))
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for k, v in inputs.items()]
    outs = [helper.make_empty_tensor_value_info(f"y{i}") for i in range(n_out)]
    init = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
    graph = helper.make_graph([node], op, ins, outs, init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=8)


_R = np.random.default_rng(0)
_IMG = _R.standard_normal((2, 8, 5, 6)).astype(np.float32)
_SMALL = _R.standard_normal((2, 3, 4, 5)).astype(np.float32)
_F = np.float32
_I = np.int64

_NODE_CASES = {
    "ConstantOfShape": ("ConstantOfShape", {}, {"value": numpy_helper.from_array(
        np.array([1.5], _F))}, 13, {"s": np.array([2, 3], _I)}, 1),
    "Sum": ("Sum", {"a": _SMALL, "b": _SMALL[:1] * 2}, {}, 13, {"c": _SMALL[0, 0]}, 1),
    "Mean": ("Mean", {"a": _SMALL, "b": -_SMALL}, {}, 13, {"c": _SMALL[0, 0]}, 1),
    "Max": ("Max", {"a": _SMALL, "b": _SMALL[:, :1]}, {}, 13, {}, 1),
    "Min": ("Min", {"a": _SMALL, "b": _SMALL[:, :1]}, {}, 13, {}, 1),
    "LRN": ("LRN", {"x": _IMG}, {"size": 5, "alpha": 1e-2, "beta": 0.75, "bias": 2.0}, 13, {},
            1),
    "GlobalMaxPool": ("GlobalMaxPool", {"x": _IMG}, {}, 13, {}, 1),
    "PRelu": ("PRelu", {"x": _IMG}, {}, 13, {"s": _R.random((8, 1, 1), _F)}, 1),
    "LeakyRelu": ("LeakyRelu", {"x": _IMG}, {"alpha": 0.2}, 13, {}, 1),
    "HardSigmoid": ("HardSigmoid", {"x": _IMG}, {"alpha": 0.3, "beta": 0.4}, 13, {}, 1),
    "HardSwish": ("HardSwish", {"x": _IMG * 4}, {}, 14, {}, 1),
    "Mish": ("Mish", {"x": _IMG}, {}, 18, {}, 1),
    "Gelu": ("Gelu", {"x": _IMG}, {"approximate": "tanh"}, 20, {}, 1),
    "Softsign": ("Softsign", {"x": _IMG}, {}, 13, {}, 1),
    "Upsample-7": ("Upsample", {"x": _SMALL}, {"scales": [1.0, 1.0, 2.0, 3.0]}, 7, {}, 1),
    "Upsample-9-linear": ("Upsample", {"x": _SMALL}, {"mode": "linear"}, 9,
                          {"s": np.array([1, 1, 2, 2], _F)}, 1),
    "Resize-10": ("Resize", {"x": _SMALL}, {"mode": "nearest"}, 10,
                  {"s": np.array([1, 1, 2, 1.5], _F)}, 1),
    "Resize-11-sizes-linear": ("Resize", {"x": _SMALL}, {"mode": "linear"}, 11,
                               {"roi": np.array([], _F), "s": np.array([], _F),
                                "z": np.array([2, 3, 7, 9], _I)}, 1),
    "Resize-13-align-corners": ("Resize", {"x": _SMALL}, {
        "mode": "linear", "coordinate_transformation_mode": "align_corners"}, 13,
        {"roi": np.array([], _F), "s": np.array([1, 1, 2, 2], _F)}, 1),
    "Resize-13-down-pytorch": ("Resize", {"x": _IMG}, {
        "mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, 13,
        {"roi": np.array([], _F), "s": np.array([1, 1, 0.6, 0.5], _F)}, 1),
    "Resize-13-nearest-asym": ("Resize", {"x": _SMALL}, {
        "mode": "nearest", "coordinate_transformation_mode": "asymmetric",
        "nearest_mode": "floor"}, 13, {"roi": np.array([], _F), "s": np.array([1, 1, 2, 2], _F)},
        1),
    "Resize-13-nearest-half": ("Resize", {"x": _IMG}, {"mode": "nearest"}, 13,
                               {"roi": np.array([], _F), "s": np.array([1, 1, 1.7, 0.7], _F)},
                               1),
    "Resize-18-axes": ("Resize", {"x": _SMALL}, {"mode": "nearest", "axes": [2, 3],
                                                 "nearest_mode": "round_prefer_ceil"}, 18,
                       {"roi": np.array([], _F), "s": np.array([], _F),
                        "z": np.array([6, 11], _I)}, 1),
    "Split-11-attr": ("Split", {"x": _IMG}, {"axis": 1, "split": [3, 5]}, 11, {}, 2),
    "Split-13-input": ("Split", {"x": _IMG}, {"axis": 1}, 13, {"s": np.array([2, 6], _I)}, 2),
    "Split-13-equal": ("Split", {"x": _IMG}, {"axis": 1}, 13, {}, 4),
    "Split-18-num-outputs": ("Split", {"x": _IMG}, {"axis": 1, "num_outputs": 3}, 18, {}, 3),
    "Expand": ("Expand", {"x": _SMALL[:, :1]}, {}, 13, {"s": np.array([3, 1, 1], _I)}, 1),
    "Where": ("Where", {"c": _SMALL > 0, "a": _SMALL}, {}, 13, {"b": np.array(-1, _F)}, 1),
    "Cast": ("Cast", {"x": _SMALL * 3}, {"to": TensorProto.INT64}, 13, {}, 1),
    "Shape": ("Shape", {"x": _SMALL}, {"start": 1, "end": -1}, 15, {}, 1),
    "Gather": ("Gather", {"x": _SMALL}, {"axis": 2}, 13, {"i": np.array([[3, -1], [0, 1]], _I)},
               1),
    "Transpose": ("Transpose", {"x": _SMALL}, {"perm": [0, 3, 1, 2]}, 13, {}, 1),
    "DepthToSpace-DCR": ("DepthToSpace", {"x": _IMG}, {"blocksize": 2}, 13, {}, 1),
    "DepthToSpace-CRD": ("DepthToSpace", {"x": _IMG}, {"blocksize": 2, "mode": "CRD"}, 13, {},
                         1),
    "SpaceToDepth": ("SpaceToDepth", {"x": _IMG[..., :4, :]}, {"blocksize": 2}, 13, {}, 1),
    "InstanceNormalization": ("InstanceNormalization", {"x": _IMG}, {"epsilon": 1e-3}, 13,
                              {"s": _R.random(8, _F), "b": _R.random(8, _F)}, 1),
    "LayerNormalization": ("LayerNormalization", {"x": _IMG}, {"axis": 2}, 17,
                           {"s": _R.random((5, 6), _F), "b": _R.random((5, 6), _F)}, 1),
    "MaxPool-ceil": ("MaxPool", {"x": _IMG}, {"kernel_shape": [3, 3], "strides": [2, 2],
                                              "ceil_mode": 1}, 13, {}, 1),
    "AveragePool-ceil-pads": ("AveragePool", {"x": _IMG}, {
        "kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 1, 1], "ceil_mode": 1,
        "count_include_pad": 1}, 19, {}, 1),
    "MaxPool-same-dilated": ("MaxPool", {"x": _IMG}, {
        "kernel_shape": [2, 3], "strides": [2, 1], "auto_pad": "SAME_UPPER",
        "dilations": [1, 2]}, 13, {}, 1),
    "Conv-same-lower": ("Conv", {"x": _IMG}, {"auto_pad": "SAME_LOWER", "strides": [2, 2]}, 13,
                        {"w": _R.standard_normal((4, 8, 2, 3)).astype(_F)}, 1),
    "ConvTranspose-pads": ("ConvTranspose", {"x": _IMG}, {"strides": [2, 2],
                                                          "pads": [1, 0, 0, 1]}, 13,
                           {"w": _R.standard_normal((8, 3, 3, 3)).astype(_F)}, 1),
    "Pad-reflect": ("Pad", {"x": _IMG}, {"mode": "reflect"}, 13,
                    {"p": np.array([0, 0, 1, 2, 0, 0, 2, 1], _I)}, 1),
    "Pad-edge-axes": ("Pad", {"x": _IMG}, {"mode": "edge"}, 18,
                      {"p": np.array([1, 2, 2, 0], _I), "v": np.array([0], _F),
                       "a": np.array([2, 3], _I)}, 1),
    "Slice-negative-step": ("Slice", {"x": _SMALL}, {}, 13,
                            {"s": np.array([-1, 3], _I), "e": np.array([-100, 0], _I),
                             "a": np.array([3, 2], _I), "t": np.array([-2, -1], _I)}, 1),
    "ReduceMin-18": ("ReduceMin", {"x": _SMALL}, {"keepdims": 0}, 18,
                     {"a": np.array([1, 3], _I)}, 1),
    "ReduceProd": ("ReduceProd", {"x": _SMALL}, {"axes": [2]}, 13, {}, 1),
    "Tile": ("Tile", {"x": _SMALL}, {}, 13, {"r": np.array([1, 2, 1, 3], _I)}, 1),
    "Range": ("Range", {}, {}, 13, {"a": np.array(2, _I), "b": np.array(11, _I),
                                    "c": np.array(3, _I)}, 1),
    "Softmax-11-axis1": ("Softmax", {"x": _SMALL}, {"axis": 1}, 11, {}, 1),
    "Softmax-13-axis1": ("Softmax", {"x": _SMALL}, {"axis": 1}, 13, {}, 1),
    "Flatten-negative-axis": ("Flatten", {"x": _SMALL}, {"axis": -2}, 13, {}, 1),
    "GlobalAveragePool": ("GlobalAveragePool", {"x": _IMG}, {}, 13, {}, 1),
    "ReduceMax": ("ReduceMax", {"x": _SMALL}, {"axes": [0, 2]}, 13, {}, 1),
    "Size": ("Size", {"x": _SMALL}, {}, 13, {}, 1),
    "Identity": ("Identity", {"x": _SMALL}, {}, 13, {}, 1),
    "Dropout": ("Dropout", {"x": _SMALL}, {}, 13, {"r": np.array(0.5, _F)}, 1),
    "Ceil": ("Ceil", {"x": _SMALL * 3}, {}, 13, {}, 1),
    "Floor": ("Floor", {"x": _SMALL * 3}, {}, 13, {}, 1),
    "Erf": ("Erf", {"x": _SMALL}, {}, 13, {}, 1),
    "Log": ("Log", {"x": np.abs(_SMALL) + 0.1}, {}, 13, {}, 1),
    "Reciprocal": ("Reciprocal", {"x": np.abs(_SMALL) + 0.1}, {}, 13, {}, 1),
    "Sign": ("Sign", {"x": np.round(_SMALL)}, {}, 13, {}, 1),
    "Shrink": ("Shrink", {"x": _SMALL}, {"lambd": 0.7, "bias": 0.2}, 13, {}, 1),
    "CastLike": ("CastLike", {"x": _SMALL * 3}, {}, 15, {"t": np.array([1], np.int32)}, 1),
    "Equal": ("Equal", {"a": np.round(_SMALL)}, {}, 13, {"b": np.array(0, _F)}, 1),
    "Less": ("Less", {"a": _SMALL, "b": _SMALL[:1]}, {}, 13, {}, 1),
    "LessOrEqual": ("LessOrEqual", {"a": np.round(_SMALL), "b": np.round(_SMALL[:1])}, {}, 16,
                    {}, 1),
    "Greater": ("Greater", {"a": _SMALL, "b": _SMALL[:1]}, {}, 13, {}, 1),
    "GreaterOrEqual": ("GreaterOrEqual", {"a": np.round(_SMALL), "b": np.round(_SMALL[:1])},
                       {}, 16, {}, 1),
    "And": ("And", {"a": _SMALL > 0, "b": _SMALL[:1] < 0.5}, {}, 13, {}, 1),
    "Or": ("Or", {"a": _SMALL > 0, "b": _SMALL[:1] < -0.5}, {}, 13, {}, 1),
    "Not": ("Not", {"a": _SMALL > 0}, {}, 13, {}, 1),
}


#: cases where one oracle cannot run the case or departs from the ONNX spec (the other is used)
_ORACLE_OFF = {
    "LRN": ("reference", "onnx.reference's LRN loops over the batch axis instead of the channels "
            "(`for c in range(x.shape[0])`)"),
    "Softmax-11-axis1": ("reference", "onnx.reference applies opset 13's single-axis Softmax to "
                         "opset 11, where the input is flattened from `axis` on"),
    "Resize-10": ("reference", "onnx.reference cannot run Resize-10 (it finds neither sizes nor "
                  "scales)"),
    "Upsample-7": ("reference", "onnx.reference has no Upsample-7 (scales as an attribute)"),
    "Upsample-9-linear": ("reference", "onnx.reference's Upsample is nearest with integer "
                          "scales only"),
    "MaxPool-same-dilated": ("onnxruntime", "onnxruntime sizes SAME padding without the "
                             "dilation: its (3, 4) output contradicts ONNX shape inference's "
                             "(3, 6)"),
    "Resize-13-nearest-half": ("onnxruntime", "onnxruntime departs from the spec's half_pixel + "
                               "round_prefer_floor indices for a 0.7 downscale (onnx.reference "
                               "follows them)"),
}


@pytest.mark.parametrize("case", sorted(_NODE_CASES))
def test_single_operator_against_onnxruntime_and_reference(case):
    op, inputs, attrs, opset, consts, n_out = _NODE_CASES[case]
    model = _graph(op, inputs, attrs, opset, consts, n_out)
    with torch.no_grad():
        got = OnnxTorchGraph(model).run(*(torch.from_numpy(v) for v in inputs.values()))
    off = _ORACLE_OFF.get(case, ("", ""))[0]
    oracles = {"onnxruntime": lambda: _ort(model).run(None, inputs),
               "reference": lambda: ReferenceEvaluator(model).run(None, inputs)}
    for name, run in oracles.items():
        if name == off:
            continue
        oracle = run()
        assert len(got) == len(oracle) == n_out
        for mine, want in zip(got, oracle, strict=True):
            assert mine.numpy().shape == want.shape
            np.testing.assert_allclose(mine.numpy(), want, rtol=1e-5, atol=1e-5)


def test_every_operator_the_issue_names_is_claimed_and_tested():
    named = {"ConstantOfShape", "Sum", "Mean", "Max", "Min", "LRN", "GlobalMaxPool", "PRelu",
             "LeakyRelu", "HardSigmoid", "HardSwish", "Resize", "Upsample", "Split", "Expand",
             "Where", "Cast", "Shape", "Gather", "Transpose", "DepthToSpace",
             "InstanceNormalization"}
    assert named <= set(OnnxTorchGraph.SUPPORTED)
    assert named <= {spec[0] for spec in _NODE_CASES.values()}


# ---- fixed batch sizes, logits shapes, fallback ----

def _fixed_batch_model(rebatchable: bool) -> onnx.ModelProto:
    """x (1, 2, 3) -> Reshape [1, 6] -> MatMul w (6, 4): the leading 1 of the target is the
    batch. With ``rebatchable=False`` the input is transposed first, so the 1 is not it."""
    nodes = []
    src = "x"
    if not rebatchable:
        nodes.append(helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]))
        src = "t"
    nodes += [helper.make_node("Reshape", [src, "s"], ["r"]),
              helper.make_node("MatMul", ["r", "w"], ["z"])]
    w = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    graph = helper.make_graph(
        nodes, "fixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.array([1, 6], np.int64), "s"),
         numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_fixed_batch_graph_runs_any_batch():
    model = _fixed_batch_model(rebatchable=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = robcurves.wrap(model)
    x = torch.rand(5, 2, 3, generator=torch.Generator().manual_seed(0))
    ref = torch.cat([torch.from_numpy(_ort(model).run(None, {"x": x[i:i + 1].numpy()})[0])
                     for i in range(5)])
    np.testing.assert_allclose(clf.predict_logits(x), ref, rtol=1e-6)  # onnxruntime, chunked
    with torch.no_grad():
        np.testing.assert_allclose(clf.torch_graph(x), ref, rtol=1e-5, atol=1e-6)
    _, _, grad = clf.value_and_grad(x, ref.argmax(1), margin_loss)
    assert grad.shape == x.shape and torch.isfinite(grad).all()


def test_fixed_batch_reshape_of_a_non_batch_dim_is_not_rebatched():
    """After the Transpose, dim 0 is not the batch: the leading 1 stays, and a batch of 5
    fails loudly instead of mixing points."""
    graph = OnnxTorchGraph(_fixed_batch_model(rebatchable=False))
    with pytest.raises(RuntimeError, match="invalid for input of size 30"):
        graph(torch.rand(5, 2, 3))
    assert graph(torch.rand(1, 2, 3)).shape == (1, 4)


def _one_node_classifier(op: str, out_shape: list, **attrs) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["z"], **attrs)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 2, 2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, out_shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_logits_with_trailing_ones_are_accepted_and_others_refused_with_their_shape():
    x = torch.rand(4, 3, 2, 2)
    clf = robcurves.wrap(_one_node_classifier("GlobalMaxPool", ["n", 3, 1, 1]))
    np.testing.assert_allclose(clf.predict_logits(x), x.amax(dim=(2, 3)))
    _, _, grad = clf.value_and_grad(x, torch.zeros(4, dtype=torch.long), margin_loss)
    assert grad.shape == x.shape
    clf = robcurves.wrap(_one_node_classifier("ReduceMax", ["n", 3, 2], axes=[3], keepdims=0))
    with pytest.raises(ValueError, match=r"\(4, 3, 2\)"):
        clf.predict_logits(x)


def test_unsupported_operators_fall_back_naming_each_and_where_to_report():
    graph = helper.make_graph(
        [helper.make_node("Hardmax", ["x"], ["h"]), helper.make_node("Det", ["h"], ["d"]),
         helper.make_node("Unsqueeze", ["d", "one"], ["u"]),
         helper.make_node("Concat", ["u", "u"], ["z"], axis=1)],
        "exotic", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 2])],
        [numpy_helper.from_array(np.array([1], np.int64), "one")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with pytest.warns(UserWarning, match="Det, Hardmax.*robcurves issue tracker") as rec:
        clf = robcurves.wrap(model)
    assert len(rec) == 1 and clf.label_only
    x = torch.rand(2, 3, 3)
    assert clf.predict_logits(x).shape == (2, 2)
    with pytest.raises(UnsupportedOnnxGraph, match="Det, Hardmax"):
        OnnxTorchGraph(model)


# ---- what torch.onnx emits for the layers of MobileNet-, EfficientNet- and GAN-style nets ----

class _Mixed(torch.nn.Module):
    """Depthwise convolution, HardSwish, squeeze-excitation with HardSigmoid, SiLU, PReLU,
    LeakyReLU, instance norm, pixel shuffle (DepthToSpace), split, interpolate
    (Resize/Upsample), max/min/mean merges, global max pool, adaptive average pool."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.Hardswish())
        self.dw = nn.Conv2d(16, 16, 3, 1, 1, groups=16)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, 4, 1), nn.ReLU(),
                                nn.Conv2d(4, 16, 1), nn.Hardsigmoid())
        self.prelu = nn.PReLU(8)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.up = nn.Conv2d(8, 32, 1)
        self.head = nn.Linear(16, 5)
        with torch.no_grad():
            self.stem[1].running_mean.normal_(0, 0.1)
            self.stem[1].running_var.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = torch.nn.functional.silu(self.dw(h)) * self.se(h)
        a, b = torch.split(h, [8, 8], dim=1)
        a = self.inorm(self.prelu(a))
        b = torch.nn.functional.leaky_relu(b, 0.1)
        m = torch.maximum(a, b) + torch.minimum(a, b) * 0.5
        s = torch.nn.functional.pixel_shuffle(self.up(m), 2)  # 8 channels at 2x
        s = torch.nn.functional.interpolate(s, scale_factor=0.5, mode="bilinear",
                                            align_corners=False)
        s2 = torch.nn.functional.interpolate(m, scale_factor=2, mode="nearest")[..., ::2, ::2]
        z = torch.cat([s.amax(dim=(2, 3)), (s2 + m).mean(dim=(2, 3))], dim=1)
        return self.head(z)


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_torch_onnx_export_of_mobile_style_layers_matches_torch(opset):
    import io

    net = _Mixed().eval()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x[:2],), buf, dynamo=False, opset_version=opset,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}})
    ops = {n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node}
    assert {"HardSwish" if opset >= 14 else "HardSigmoid", "DepthToSpace", "Split",
            "Resize", "InstanceNormalization", "PRelu", "LeakyRelu", "Max", "Min"} <= ops
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = robcurves.wrap(buf.getvalue(), framework="onnx")
    with torch.no_grad():
        want = net(x)
    np.testing.assert_allclose(clf.predict_logits(x), want, rtol=1e-5, atol=1e-5)
    y = want.argmax(1)
    _, _, grad = clf.value_and_grad(x, y, margin_loss)
    xg = x.clone().requires_grad_(True)
    margin_loss(net(xg), y).sum().backward()
    np.testing.assert_allclose(grad, xg.grad, rtol=1e-4, atol=1e-6)
