"""What every benchmark shares: the machine line and its marked section of RESULTS.md."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().with_name("RESULTS.md")


def machine() -> str:
    """CPU model, cores, OS kernel, Python and torch versions and torch's thread count."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    u = platform.uname()
    return (f"{cpu}, {os.cpu_count()} cores, {u.system} {u.release} {u.machine}, Python "
            f"{platform.python_version()}, torch {torch.__version__} with "
            f"{torch.get_num_threads()} thread(s)")


def write_section(name: str, body: str, path: Path = RESULTS) -> Path:
    """Put ``body`` between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path``,
    replacing what was there and leaving the other benchmarks' sections alone."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    old = path.read_text() if path.exists() else "# robcurves benchmark results\n"
    if start in old and end in old:
        new = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, old,
                     flags=re.S)
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)
    return path
