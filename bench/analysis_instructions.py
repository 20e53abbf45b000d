#!/usr/bin/env python3
"""Instructions per message of the reader alone and of the worker pass (callgrind).

CPU seconds on a machine shared by several engineers swing with its load; the number
of instructions executed does not, so the worker pass's cost is compared before and
after a change in instructions: each part runs under ``valgrind --tool=callgrind`` on
a 2 MB rtcstats-js dump (the one ``bench/analysis.py`` builds), minus a run that only
imports, divided by the messages read. The hash seed is fixed (dict probing depends on
it). About a minute per part under valgrind.

    python bench/analysis_instructions.py [--mb 2]
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


def _child(what: str, path: Path) -> None:
    from analysis import open_dump, worker_pass

    if what == "reader":
        print(sum(1 for _ in open_dump(path)))
    elif what == "worker":
        print(worker_pass(path))
    else:
        print(0)


def _instructions(what: str, path: Path, out: Path) -> tuple[int, int]:
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         sys.executable, __file__, "--child", what, str(path)],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )  # fmt: skip
    found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
    assert found is not None, done.stderr[-500:]
    return int(found.group(1)), int(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=2, help="raw size of the dump (MB)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], Path(args.child[1]))
        return 0
    from analysis import DIALECTS, write_zstd

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rtcstats5.rtcstats.zst"
        write_zstd(path, DIALECTS["rtcstats#5.0"](int(args.mb * 1e6)))
        base, _ = _instructions("imports", path, Path(tmp) / "cg.out")
        for what in ("reader", "worker"):
            total, messages = _instructions(what, path, Path(tmp) / "cg.out")
            print(f"{what:8s} {(total - base) / messages / 1000:7.1f}k instructions per message "
                  f"({messages} messages)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
