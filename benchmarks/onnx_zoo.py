"""ONNX models from the wild: operator coverage of the torch interpreter on the ``onnx`` wheel's
test suites, and the cost of one attack step on ResNet-50 through the ONNX bridge against a
torch-native ResNet-50.

The torch-native ResNet-50 (no torchvision here) is built in this script: the standard
bottleneck ResNet-50 (3-4-6-3 blocks, 1000 classes) with random weights. It is exported by
``torch.onnx`` and that graph wrapped as ONNX, so the bridge and native torch compute the same
function (the script checks their logits agree); the model zoo's own ResNet-50 graph (Caffe2
export, ``onnx/backend/test/data/light``, declared batch size 1) is timed through the bridge as
well. One attack step is ``value_and_grad`` of a batch (forward + backward): median CPU
seconds (``time.process_time``, one torch thread, so about the wall time on an idle core; the
machine is shared) of ``--repeats`` after warm-up.

Run: ``OMP_NUM_THREADS=1 python benchmarks/onnx_zoo.py [--batch 1 8] [--repeats 5]``. Prints the
tables and writes them into ``benchmarks/RESULTS.md`` between the ``onnx_zoo`` markers.
"""

from __future__ import annotations

import argparse
import datetime
import io
import sys
import time
import warnings
from pathlib import Path

import onnx
import onnxruntime
import torch
from torch import nn

import robcurves
from robcurves.bridges.onnx import OnnxTorchGraph

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import machine, write_section  # noqa: E402
from bridges import time_step  # noqa: E402

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
SUITES = ("pytorch-converted", "pytorch-operator", "simple", "node")
STEP_NOTE = ("Times are CPU seconds of the process (`time.process_time`, one torch thread): "
             "about the wall time on an idle core, and steadier than wall time on this shared "
             "machine. The bridge interprets the graph node by node in Python; at these sizes "
             "that costs nothing measurable next to the convolutions (differences within the "
             "noise of 3 repeats). `torch.onnx` folds batch norms into the convolutions, so the "
             "exported graph does a little less work than the native net; the zoo graph keeps "
             "them as nodes and its placeholder weights do not change its speed.")


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = 4 * width
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                   nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def resnet50(num_classes: int = 1000) -> nn.Sequential:
    """ResNet-50 (He et al. 2016, bottleneck v1.5: stride in the 3x3 convolution), random
    weights and batch-norm statistics, in eval mode."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                               nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            layers.append(Bottleneck(cin, width, stride if b == 0 else 1))
            cin = 4 * width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.1)
                m.bias.normal_(0, 0.1)
    return net.eval()


def coverage() -> tuple[str, list[str]]:
    """Markdown: claimed operators that the wheel's suites exercise, and the cases run."""
    appearing: dict[str, int] = {}
    cases = runnable = 0
    for suite in SUITES:
        for path in sorted((DATA / suite).glob("*/model.onnx")):
            model = onnx.load(str(path), load_external_data=False)
            ops = {n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}"
                   for n in model.graph.node}
            for op in ops:
                appearing[op] = appearing.get(op, 0) + 1
            cases += 1
            runnable += ops <= set(OnnxTorchGraph.SUPPORTED)
    claimed = set(OnnxTorchGraph.SUPPORTED)
    covered = sorted(set(appearing) & claimed)
    missing = sorted(set(appearing) - claimed)
    suites = [s for s in SUITES if (DATA / s).is_dir()]
    text = (f"Suites in onnx {onnx.__version__}'s wheel: {', '.join(suites)} "
            f"({', '.join(s for s in SUITES if s not in suites) or 'none'} not shipped). "
            f"Operators appearing in them: {len(appearing)}; supported by the interpreter: "
            f"**{len(covered)} / {len(appearing)}**. Test cases whose operators are all "
            f"supported (each run by `tests/test_onnx_zoo.py` against its stored outputs): "
            f"**{runnable} / {cases}**. Not supported: {', '.join(missing)}. The interpreter "
            f"claims {len(claimed)} operators; the {len(claimed - set(appearing))} the suites "
            f"do not exercise ({', '.join(sorted(claimed - set(appearing)))}) are tested one "
            f"by one against onnxruntime and `onnx.reference` in the same test file.")
    return text, covered


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="only print the tables")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cov, _ = coverage()
    print(cov)

    net = resnet50()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(2, 3, 224, 224),), buf, dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}})
    clfs = {"torch-native ResNet-50": robcurves.wrap(net),
            "same net exported by torch.onnx, through the bridge": robcurves.wrap(
                buf.getvalue(), framework="onnx"),
            "model zoo ResNet-50 graph (Caffe2 export, batch 1 declared), through the bridge":
                robcurves.wrap(str(DATA / "light" / "light_resnet50.onnx"))}
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 224, 224, generator=g)
    with torch.no_grad():
        native = net(x)
        bridged = clfs["same net exported by torch.onnx, through the bridge"].torch_graph(x)
    err = float((native - bridged).abs().max() / native.abs().max())
    print(f"bridge vs native logits: max relative difference {err:.2e}")
    rows = []
    for b in args.batch:
        x = torch.rand(b, 3, 224, 224, generator=g)
        y = torch.zeros(b, dtype=torch.long)
        base = None
        for name, clf in clfs.items():
            t = time_step(clf, x, y, args.repeats, clock=time.process_time)
            base = t if base is None else base
            rows.append((b, name, t, t / base))
            print(f"batch {b:4d}  {name}: {t:.3f} s ({t / base:.2f}x)", flush=True)
    lines = ["| batch | model | CPU s per step (median) | relative to torch-native |",
             "|---:|---|---:|---:|"]
    lines += [f"| {b} | {n} | {t:.3f} | {r:.2f}x |" for b, n, t, r in rows]
    table = "\n".join(lines)
    print(table)
    if args.no_write:
        return
    meta = (f"Machine: {machine()} (shared with other jobs: timings are noisy), onnx "
            f"{onnx.__version__}, onnxruntime {onnxruntime.__version__}. Command: "
            f"`OMP_NUM_THREADS=1 python benchmarks/onnx_zoo.py {' '.join(sys.argv[1:])}`. "
            f"Date: {datetime.date.today().isoformat()}.")
    body = (f"## ONNX models from the wild\n\n{meta}\n\n### Operator coverage\n\n{cov}\n\n"
            f"### One attack step on ResNet-50 (forward + backward of a batch, 224x224, CPU)\n\n"
            f"The torch-native ResNet-50 is built in the benchmark script (no torchvision); "
            f"its `torch.onnx` export through the bridge computes the same logits (max "
            f"relative difference {err:.1e}). {STEP_NOTE}\n\n{table}")
    path = write_section("onnx_zoo", body)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
