"""The CPU thread count of torch's intra-op pool: one place to set it and record it.

On a machine whose cores are busy (other users, other jobs), torch's default of one thread per
core can collapse: its worker threads spin waiting for each other while the OS runs someone
else, and a step that takes 20 ms on one thread takes seconds. ``benchmarks/threads.py``
measures this; its numbers are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["set_threads", "using_threads", "default_threads", "check_threads"]

#: The default of the ``robcurves`` command (``--threads``): see README, "Threads".
DEFAULT_CLI_THREADS = 1


def check_threads(threads: object, what: str = "threads") -> int:
    """``threads`` as a positive int, or ``ValueError`` naming the value."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{what} must be a whole number >= 1; got {threads!r}")
    return threads


def default_threads() -> int:
    """The thread count the ``robcurves`` command uses without ``--threads``:
    ``ROBCURVES_THREADS`` if set, else :data:`DEFAULT_CLI_THREADS`."""
    env = os.environ.get("ROBCURVES_THREADS")
    if env is None or not env.strip():
        return DEFAULT_CLI_THREADS
    try:
        return check_threads(int(env), "ROBCURVES_THREADS")
    except ValueError:
        raise ValueError(f"ROBCURVES_THREADS must be a whole number >= 1; got {env!r}"
                         ) from None


def set_threads(threads: int) -> int:
    """Set torch's CPU thread count for everything robcurves does afterwards (attacks,
    certificates, training, inter-class distances); returns the previous count.

    One thread is the safe choice on a shared or busy machine (see README, "Threads"); more
    threads help only on idle cores and larger models.
    """
    n = check_threads(threads)
    old = torch.get_num_threads()
    if n != old:
        torch.set_num_threads(n)
    return old


@contextmanager
def using_threads(threads: int | None) -> Iterator[int]:
    """Run a block with ``threads`` CPU threads (``None``: leave the count as it is), then
    restore the previous count. Yields the count in effect."""
    if threads is None:
        yield torch.get_num_threads()
        return
    old = set_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)
