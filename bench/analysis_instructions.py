#!/usr/bin/env python3
"""Instructions per message of the reader alone and of the worker pass (callgrind).

CPU seconds on a machine shared by several engineers swing with its load; the number
of instructions executed does not, so the worker pass's cost is compared before and
after a change in instructions: each part runs under ``valgrind --tool=callgrind`` on
a 2 MB rtcstats-js dump (the one ``bench/analysis.py`` builds), minus a run that only
imports, divided by the messages read. The hash seed is fixed (dict probing depends on
it). About a minute per part under valgrind.

``--build compiled`` measures a compiled build of this checkout (setup.py with
``RTCSTATS_COMPILE=1``, built in a temporary directory first, about a minute),
``--build both`` the two one after the other; ``--only MODULE`` (repeatable) compiles
only those of ``rtcstats_server/compiled.py``'s list, to measure what each saves.

    python bench/analysis_instructions.py [--mb 2] [--build pure|compiled|both] [--only M]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import builds  # noqa: E402  (bench/builds.py)


def _child(what: str, path: Path, package: str) -> None:
    builds.use(package)  # a compiled build: its package, not this checkout's
    from analysis import open_dump, worker_pass

    if what == "reader":
        print(sum(1 for _ in open_dump(path)))
    elif what == "worker":
        print(worker_pass(path))
    else:
        print(0)


def _instructions(what: str, path: Path, out: Path, package: str) -> tuple[int, int]:
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         sys.executable, __file__, "--child", what, str(path), package],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )  # fmt: skip
    found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
    assert found is not None, done.stderr[-500:]
    return int(found.group(1)), int(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=2, help="raw size of the dump (MB)")
    parser.add_argument("--build", choices=builds.CHOICES, default="pure")
    parser.add_argument("--only", action="append", help="compile only this module")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], Path(args.child[1]), args.child[2])
        return 0
    from analysis import DIALECTS, write_zstd

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rtcstats5.rtcstats.zst"
        write_zstd(path, DIALECTS["rtcstats#5.0"](int(args.mb * 1e6)))
        packages = builds.packages(args.build, Path(tmp), args.only)
        for build, package in packages.items():
            base, _ = _instructions("imports", path, Path(tmp) / "cg.out", package)
            for what in ("reader", "worker"):
                total, messages = _instructions(what, path, Path(tmp) / "cg.out", package)
                print(f"{build:8s} {what:8s} {(total - base) / messages / 1000:7.1f}k "
                      f"instructions per message ({messages} messages)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
