"""``rtcstats-server`` on uvloop, for the benchmark only: the package is unchanged.

Our CLI starts the server with ``asyncio.run``, which takes its loop from the
installed event-loop policy; installing uvloop's policy first is all it takes to run
the same code on libuv. Measures what issue 17 asks before anything is decided about
making uvloop a default.

Usage: python bench/uvloop_serve.py serve [rtcstats-server serve options]
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import uvloop

# The tree this file is in, not whichever one an editable install points at; or the
# compiled build of it that bench/ingest --build names (bench/builds.py).
sys.path.insert(
    0, os.environ.get("RTCSTATS_BENCH_PACKAGE") or str(Path(__file__).resolve().parents[1])
)

from rtcstats_server.cli.main import main

if __name__ == "__main__":
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    sys.exit(main())
