"""``robcurves label``: a labelling page for adversarial examples, its labels and the study.

``prepare`` writes a session (PNG files and a manifest) from a curve run folder, ``serve`` runs
the page (preparing the session first when given --curves), ``export`` writes the labels as CSV,
``study`` writes the human-validated curve and its page.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._norms import norm_name
from ._common import load_model_spec, parse_eps_list, parse_norms

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _source_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--curves", required=required,
                   help="curve run folder (written by `robcurves curve`)")
    p.add_argument("--data", required=required, help="the curves' data set (name or path)")
    p.add_argument("--model", required=required, help="the curves' model (as for `curve`)")
    p.add_argument("--norm", default=None, help="which curve of the folder (default: linf if "
                   "there, else the only one)")
    p.add_argument("--eps", default=None, help="chosen eps for stretched adversarials, e.g. "
                   "0.1,0.2 or 4/255,8/255")
    p.add_argument("--n", type=int, default=40, help="points of the curve used (default 40)")
    p.add_argument("--attack", default="auto", help="attack name (default: auto)")
    p.add_argument("--seed", type=int, default=0)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("label", help="label adversarial examples by hand (web page)",
                       description="Would a person still see the original class? Show "
                                   "adversarials and clean controls in random order and "
                                   "store what people answer.")
    s = p.add_subparsers(dest="label_command", metavar="ACTION", required=True)
    pp = s.add_parser("prepare", help="write the images of a labelling session")
    _source_args(pp, required=True)
    pp.add_argument("--session", default=None,
                    help="session folder (default CURVES/label-NORM)")
    ps = s.add_parser("serve", help="serve the labelling page",
                      description="Serve a prepared --session, or prepare one from --curves/"
                                  "--data/--model first (reused when it already exists).")
    _source_args(ps, required=False)
    ps.add_argument("--session", default=None,
                    help="session folder (default CURVES/label-NORM)")
    ps.add_argument("--db", default="labels.sqlite", help="label database (default "
                    "labels.sqlite)")
    ps.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1: this machine only)")
    ps.add_argument("--port", type=int, default=8000)
    ps.add_argument("--threads", type=int, default=8, help="server threads (default 8)")
    pe = s.add_parser("export", help="write the labels as CSV")
    pe.add_argument("--db", default="labels.sqlite")
    pe.add_argument("--out", required=True, help="CSV file")
    pt = s.add_parser("study", help="human-validated curve and its page from the labels")
    pt.add_argument("--session", required=True, help="session folder")
    pt.add_argument("--labels", required=True, help="label database or exported CSV")
    pt.add_argument("--curve", default=None, help="curve JSON (default: the curve of the "
                    "session's own distances)")
    pt.add_argument("--out", required=True, help="output folder")
    return p


def run(args: argparse.Namespace) -> int:
    return {"prepare": _prepare, "serve": _serve, "export": _export,
            "study": _study}[args.label_command](args)


def _session_dir(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The session folder and the curve file it is prepared from (None without --curves)."""
    if args.curves is None:
        if args.session is None:
            raise ValueError("give --session (a prepared session) or --curves, --data and "
                             "--model")
        return Path(args.session), None
    folder = Path(args.curves)
    if not folder.is_dir():
        raise FileNotFoundError(f"--curves {folder} is not a folder")
    found = sorted(folder.glob("curve-*.json"))
    if args.norm is not None:
        name = norm_name(parse_norms(args.norm)[0])
        found = [f for f in found if f.stem == f"curve-{name}"]
    elif len(found) > 1:
        found = [f for f in found if f.stem == "curve-linf"] or found
    if len(found) != 1:
        raise FileNotFoundError(f"no single curve file in {folder} (found "
                                f"{[f.name for f in found]}); choose one with --norm")
    session = Path(args.session) if args.session else folder / f"label-{found[0].stem[6:]}"
    return session, found[0]


def _prepare(args: argparse.Namespace, *, reuse: bool = False) -> int:
    from .. import data as rdata
    from ..curve import RobustnessCurve
    from ..labels import Session, prepare_session

    session_dir, curve_file = _session_dir(args)
    if curve_file is None:
        Session.load(session_dir)
        return 0
    eps = parse_eps_list(args.eps) if args.eps else []
    if reuse and (session_dir / "manifest.json").exists():
        s = Session.load(session_dir)
        n = min(args.n, len(RobustnessCurve.load(curve_file).distances))
        if list(s.eps) != eps or s.settings["n"] != n:
            raise ValueError(f"the session in {session_dir} was prepared with eps {list(s.eps)} "
                             f"and {s.settings['n']} points, not eps {eps} and {n} points; "
                             "remove it, or serve it with --session")
        print(f"using the session in {session_dir} ({len(s.items)} images)")
        return 0
    if args.data is None or args.model is None:
        raise ValueError("--curves needs --data and --model (the curves' own)")
    curve = RobustnessCurve.load(curve_file)
    s = prepare_session(session_dir, curve, load_model_spec(args.model), rdata.load(args.data),
                        eps=eps, n=args.n, attack=args.attack, seed=args.seed,
                        settings={"curve": str(curve_file), "model": args.model})
    kinds: dict[str, int] = {}
    for item in s.items.values():
        kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
    print(f"wrote {len(s.items)} images to {session_dir} "
          f"({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from ..labels.app import serve

    _prepare(args, reuse=True)
    session_dir, _ = _session_dir(args)
    if args.host not in LOCAL_HOSTS:
        print(f"warning: listening on {args.host}: anyone who can reach this address can "
              "read the images and add labels")
    print(f"labelling page on http://{args.host}:{args.port}/ (labels in {args.db}); "
          "Ctrl-C stops it", flush=True)
    serve(session_dir, args.db, host=args.host, port=args.port, threads=args.threads)
    return 0


def _export(args: argparse.Namespace) -> int:
    from ..labels import LabelStore

    if not Path(args.db).is_file():
        raise FileNotFoundError(f"no label database {args.db}")
    store = LabelStore(args.db)
    n = store.export_csv(args.out)
    print(f"wrote {n} label{'' if n == 1 else 's'} to {args.out}")
    return 0


def _study(args: argparse.Namespace) -> int:
    from ..curve import RobustnessCurve
    from ..labels import Session, read_labels
    from ..studies.human import human_study

    curve = RobustnessCurve.load(args.curve) if args.curve else None
    result = human_study(read_labels(args.labels), Session.load(args.session), curve)
    paths = result.write(args.out)
    for line in result.summary():
        print(line)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0
