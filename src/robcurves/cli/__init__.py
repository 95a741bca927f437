"""The ``robcurves`` command. Each subcommand is a module of this package defining
``add_parser(subparsers)`` and ``run(args) -> int``; ``COMMANDS`` lists them in help order."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["demo", "curve", "plot", "compare", "scale", "train", "zoo", "gallery", "label"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="robcurves",
        description="Robustness curves: per-point minimal adversarial distances over all eps.")
    parser.add_argument("--version", action="version", version=f"robcurves {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = importlib.import_module(f"{__name__}.{name}")
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, TypeError, ImportError) as exc:
        print(f"robcurves {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"robcurves {args.command}: interrupted; finished batches are saved, rerun the same "
              "command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
