"""The pure and the compiled build side by side, for the benchmarks' ``--build`` option.

A benchmark that compares the two runs each measurement in a child process that
imports one build: the pure one is this checkout, the compiled one a copy of it built
with ``RTCSTATS_COMPILE=1`` in a temporary directory (``tests/services/compiled.py``,
about a minute), so the checkout itself never holds an extension module that would
shadow the code being edited. bench/analysis.py, bench/analysis_instructions.py,
bench/instructions.py and bench/ingest share this, so they build and select the
builds the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: What ``--build`` takes.
CHOICES = ("pure", "compiled", "both")


def packages(build: str, tmp: Path, only: Sequence[str] | None = None) -> dict[str, str]:
    """The builds ``--build`` asks for, by name, each as the directory to put first on
    ``sys.path`` ("" for the pure build: this checkout, as it is imported anyway).
    The compiled one is built under ``tmp``; ``only``: compile just these modules of
    ``rtcstats_server/compiled.py``'s list (to measure what each saves)."""
    found: dict[str, str] = {}
    if build in ("pure", "both"):
        found["pure"] = ""
    if build in ("compiled", "both"):
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from tests.services.compiled import build_compiled

        found["compiled"] = str(build_compiled(tmp / "compiled", only))
    return found


def use(package: str) -> None:
    """In a child: import ``rtcstats_server`` from ``package`` (a compiled build), before
    anything puts this checkout first on the path; "" keeps this checkout's."""
    if not package:
        return
    sys.path.insert(0, package)
    import rtcstats_server

    assert str(rtcstats_server.__file__).startswith(package), rtcstats_server.__file__
