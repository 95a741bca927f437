"""The ``robcurves`` command. Each subcommand is a module of this package defining
``add_parser(subparsers)`` and ``run(args) -> int``; ``COMMANDS`` lists them in help order.

Every subcommand takes ``--threads`` (torch's CPU threads; default 1, or ``ROBCURVES_THREADS``:
see README, "Threads"). Bad input (``ValueError``, a missing file, a missing optional package)
is reported in one line; any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["demo", "curve", "eval", "plot", "compare", "scale", "train", "zoo", "study",
            "reproduce", "gallery", "label"]

#: What each command keeps when interrupted (printed on Ctrl-C).
_ON_INTERRUPT = {
    "curve": "finished batches are saved in OUT/work/; rerun the same command to resume",
    "train": "finished epochs are saved in the checkpoint; rerun the same command to resume",
    "zoo": "finished models and epochs are saved; rerun the same command to resume",
    "reproduce": "finished models and curves are saved in OUT; rerun the same command to resume",
}

#: Library keyword hints in error messages, as the command line spells them.
_CLI_WORDS = {
    "pass intersect=True": "pass --intersect",
    "sweep=False": "--attack-opt sweep=false",
    "fewer restarts": "fewer --attack-opt restarts=N",
    "takes no option 'budget'": "takes no --budget",
}


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
        p.add_argument("--threads", type=int, default=None, metavar="N",
                       help="torch CPU threads (default 1, or $ROBCURVES_THREADS): more help "
                            "only on idle cores; on busy ones they can be 40x slower")
        p.set_defaults(_run=mod.run)
    return parser


def _user_error(exc: BaseException) -> bool:
    """Bad input the user can fix, as opposed to a bug in robcurves."""
    if isinstance(exc, (ValueError, FileNotFoundError, ConnectionError)):
        return True
    if isinstance(exc, ImportError):  # a missing optional package (not a broken robcurves)
        for e in (exc, exc.__cause__):
            if isinstance(e, ModuleNotFoundError) and e.name and \
                    not e.name.startswith("robcurves"):
                return True
    return False


def _cli_words(message: str) -> str:
    for lib, cli in _CLI_WORDS.items():
        message = message.replace(lib, cli)
    return message


def main(argv: list[str] | None = None) -> int:
    from .._threads import check_threads, default_threads, set_threads

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        threads = default_threads() if args.threads is None else \
            check_threads(args.threads, "--threads")
        args.threads = threads
        old = set_threads(threads)
        try:
            return int(args._run(args) or 0)
        finally:
            set_threads(old)
    except KeyboardInterrupt:
        kept = _ON_INTERRUPT.get(args.command)
        print(f"robcurves {args.command}: interrupted" + (f"; {kept}" if kept else ""),
              file=sys.stderr)
        return 130
    except Exception as exc:
        if not _user_error(exc):
            raise
        print(f"robcurves {args.command}: error: {_cli_words(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
