"""``robcurves train``: train one model by name and save it as a robcurves model file."""

from __future__ import annotations

import argparse

from ._common import parse_kv as _kv


def add_parser(sub) -> argparse.ArgumentParser:
    from ..train import arch_names, method_names

    p = sub.add_parser(
        "train", help="train a standard, adversarial, multi-perturbation, certified (IBP, KW) "
        "or MMR model",
        description="Train a model with one of robcurves' training methods and save it, with "
                    "its architecture, data, method, threat model, seed, accuracies and training "
                    "time, as a file that `robcurves curve` loads directly.")
    p.add_argument("--data", required=True, help="what robcurves.data.load takes: 'digits', a "
                   "path (IDX folder, npz...) or a registered name")
    p.add_argument("--split", default=None, help="split of a data folder to train on (default: "
                   "the data's train split where it has one, else 80%% of it by a seeded "
                   "hold-out rule; the model file records which)")
    p.add_argument("--eval-split", default=None, help="split of the same data for the final "
                   "evaluation (default: the held-out part)")
    p.add_argument("--arch", default="cnn-small", help=f"one of {', '.join(arch_names())}")
    p.add_argument("--arch-opt", action="append", type=_kv, default=[], metavar="KEY=VALUE",
                   help="architecture option, e.g. width=4 (repeatable)")
    p.add_argument("--method", default="standard", help=f"one of {', '.join(method_names())}")
    p.add_argument("--norm", default="linf", help="threat model norm: linf, l2, l1 (default linf)")
    p.add_argument("--eps", default="0.1", help="threat model radius, e.g. 0.1 or 8/255")
    p.add_argument("--steps", type=int, default=10, help="PGD steps of the training attack")
    p.add_argument("--step-size", type=float, default=2.5,
                   help="PGD step as a multiple of eps/steps (default 2.5)")
    p.add_argument("--threats", default=None,
                   help="multi-avg/multi-max threat models, e.g. linf:0.1,l2:1.0,l1:5")
    p.add_argument("--beta", type=float, default=None, help="TRADES beta (default 6)")
    p.add_argument("--kappa", type=float, default=None, help="IBP final clean-loss weight "
                   "(default 0.5)")
    p.add_argument("--clean-mix", type=float, default=None,
                   help="pgd-at weight of the clean loss (default 0)")
    g = p.add_argument_group(
        "kw (Wong & Kolter 2018)", "cross-entropy of the dual network's lower bounds on the "
        "logit margins (l_inf as published; l2, l1 also work); eps grows linearly from "
        "--eps-start over --warmup epochs (default min(20, epochs/2), Wong et al.'s schedule)")
    g.add_argument("--eps-start", type=float, default=None,
                   help="radius at the start of the eps ramp (default 0.01, published)")
    g.add_argument("--kw-bounds", default=None, choices=["dual", "ibp"],
                   help="hidden-layer bounds: dual network (default, published) or interval "
                   "bounds (much cheaper, looser)")
    g = p.add_argument_group(
        "mmr-at / mmr-universal (Croce, Andriushchenko & Hein 2019; Croce & Hein 2020)",
        "loss = CE + ramp * lambda * MMR, MMR = mean over the k_B nearest hidden-unit "
        "hyperplanes of max(0, 1 - d_B/gamma_B) + mean over the k_D nearest decision "
        "hyperplanes of max(0, 1 - d_D/gamma_D) in the linear region of each point. Defaults: "
        "the papers' Fashion-MNIST small-CNN models. mmr-at uses --norm (linf or l2) and "
        "replaces --ae-frac of each batch by PGD adversarials (the papers ran 40 steps: "
        "--steps 40); mmr-universal sums l1 and l_inf terms and uses no adversarials")
    g.add_argument("--mmr-lambda", type=float, default=None,
                   help="mmr-at lambda (default 2.0 for linf, 1.5 for l2)")
    g.add_argument("--gamma-b", type=float, default=None,
                   help="mmr-at gamma_B (default 0.15 linf, 0.45 l2)")
    g.add_argument("--gamma-d", type=float, default=None,
                   help="mmr-at gamma_D (default 0.15 linf, 0.45 l2)")
    g.add_argument("--gamma-l1", type=float, default=None,
                   help="mmr-universal gamma for the l1 terms (default 1.0)")
    g.add_argument("--gamma-linf", type=float, default=None,
                   help="mmr-universal gamma for the l_inf terms (default 0.15)")
    g.add_argument("--lambda-l1", type=float, default=None,
                   help="mmr-universal weight of the l1 terms (default 3.0)")
    g.add_argument("--lambda-linf", type=float, default=None,
                   help="mmr-universal weight of the l_inf terms (default 40.0)")
    g.add_argument("--kb-start", type=float, default=None, help="k_B as a fraction of all "
                   "hidden units in the first epoch (default 0.1 mmr-at, 0.2 mmr-universal)")
    g.add_argument("--kb-end", type=float, default=None, help="k_B fraction in the last epoch, "
                   "linear in between (default 0.02 mmr-at, 0.05 mmr-universal)")
    g.add_argument("--k-d", type=int, default=None,
                   help="k_D, nearest decision hyperplanes counted (default: number of classes)")
    g.add_argument("--ramp-epochs", type=float, default=None, help="regulariser weight "
                   "min((epoch+1)/R, 1) (default 10)")
    g.add_argument("--ae-frac", type=float, default=None,
                   help="mmr-at fraction of each batch replaced by PGD adversarials (default 0.5)")
    p.add_argument("--warmup", type=float, default=None, help="epochs of linear eps warm-up")
    p.add_argument("--warmup-start", type=float, default=None,
                   help="epoch where the eps warm-up starts")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None, help="learning rate (adam 1e-3, sgd 0.1)")
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--lr-schedule", default="cosine",
                   choices=["constant", "cosine", "step", "triangle"])
    p.add_argument("--eval-points", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (cuda if "
                   "available); default auto")
    p.add_argument("--checkpoint", default=None, help="per-epoch checkpoint file (default: "
                   "OUT.ckpt); rerun the same command to resume")
    p.add_argument("--out", required=True, help="model file to write (e.g. model.rcm)")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .. import data as rdata
    from ..data.splits import split_record, train_test
    from ..train import fit, save_model
    from ._common import parse_eps, positive

    eps = parse_eps(args.eps)  # every argument before any work
    for option in ("epochs", "batch_size", "steps", "eval_points"):
        positive(getattr(args, option), f"--{option.replace('_', '-')}")
    positive(args.step_size, "--step-size")
    positive(args.lr, "--lr")
    if args.split:
        data = rdata.load(args.data, split=args.split)
        data.info.setdefault("split", {"part": args.split, "rule": "native", "split": args.split})
        held = None
    else:  # the train split, or the training part of the seeded hold-out rule
        data, held = train_test(args.data)
    eval_data = rdata.load(args.data, split=args.eval_split) if args.eval_split else held
    opts = {k: v for k, v in (("beta", args.beta), ("kappa", args.kappa),
                              ("clean_mix", args.clean_mix), ("warmup", args.warmup),
                              ("warmup_start", args.warmup_start),
                              ("eps_start", args.eps_start), ("intermediate", args.kw_bounds),
                              ("lam", args.mmr_lambda), ("gamma_b", args.gamma_b),
                              ("gamma_d", args.gamma_d), ("gamma_l1", args.gamma_l1),
                              ("gamma_linf", args.gamma_linf), ("lambda_l1", args.lambda_l1),
                              ("lambda_linf", args.lambda_linf), ("kb_start", args.kb_start),
                              ("kb_end", args.kb_end), ("k_d", args.k_d),
                              ("ramp_epochs", args.ramp_epochs), ("ae_frac", args.ae_frac))
            if v is not None}
    out = Path(args.out)
    ckpt = Path(args.checkpoint) if args.checkpoint else out.with_name(out.name + ".ckpt")
    module = fit(data, arch=args.arch, method=args.method, norm=args.norm,
                 eps=eps, steps=args.steps, step_size=args.step_size,
                 threats=args.threats, epochs=args.epochs, batch_size=args.batch_size,
                 lr=args.lr, optimizer=args.optimizer, weight_decay=args.weight_decay,
                 lr_schedule=args.lr_schedule, arch_kwargs=dict(args.arch_opt),
                 eval_data=eval_data, eval_points=args.eval_points, seed=args.seed,
                 device=args.device, progress=not args.no_progress, checkpoint=ckpt, **opts)
    module.robcurves_meta["train_data"] = split_record(data, held, spec=args.data)
    save_model(module, out)
    ckpt.unlink(missing_ok=True)
    m = module.robcurves_meta
    pgd = ", ".join(f"{k} {v:.3f}" for k, v in m["pgd_accuracy"].items())
    print(f"saved {out}: {m['method']} {m['arch']} on {m['data']}, {m['epochs']} epochs in "
          f"{m['train_seconds']:.1f}s; clean accuracy {m['clean_accuracy']:.3f}, PGD accuracy "
          f"{pgd} (on {m['eval_pgd_n']} {m['eval_on']} points)")
    if held is not None:
        rule = m["train_data"].get("rule")
        how = ("its train split" if rule == "native" else
               f"{data.n} of {m['train_data']['of_n']} points by the seeded hold-out rule "
               f"(seed {m['train_data']['seed']}, {m['train_data']['fraction']:.0%} held out)")
        print(f"trained on {data.name} ({how}); `robcurves curve --model {out} --data "
              f"{args.data}` evaluates on the {held.n} held-out points of {held.name}")
    if "kw_certified_accuracy" in m:
        cert = ", ".join(f"{k} {v:.3f}" for k, v in m["kw_certified_accuracy"].items())
        print(f"KW-certified accuracy {cert}")
    if "ibp_certified_accuracy" in m:
        cert = ", ".join(f"{k} {v:.3f}" for k, v in m["ibp_certified_accuracy"].items())
        print(f"IBP-certified accuracy {cert}")
    return 0
