#!/usr/bin/env python3
"""Record writes/s on the embedded store (SQLite, WAL) from 1, 2 and 4 processes.

Under ``serve --workers N`` every worker writes the one shared ``sessions.sqlite3``
(each write retried while another process holds the lock: metadata/sqlite.py). This
measures what that sharing costs: P processes each write the records of a session's
life (the create, an identity update, the final write: three upserts) for their share
of ``--sessions``, all at once, with 16 sessions in flight per process (the async
writes of a busy worker), and the total writes/s over the wall time is printed.

    python bench/sqlite_workers.py [--sessions 3000] [--processes 1 2 4] [--dir /tmp]

The data dir is on the disk of ``--dir`` (default: the system's temporary directory):
tmpfs hides the fsync of each WAL checkpoint, a real disk does not.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtcstats_server.metadata.embedded import EmbeddedSessionStore  # noqa: E402

IN_FLIGHT = 16


async def _write(path: Path, sessions: int, start: float) -> int:
    store = EmbeddedSessionStore(path)
    await store.open()
    await asyncio.sleep(max(0.0, start - time.time()))  # every process begins together
    writes = 0
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def life() -> None:
        nonlocal writes
        async with gate:
            sid = uuid.uuid4().hex
            now = datetime.now(UTC)
            await store.upsert(
                sid, {"started_at": now, "state": "streaming", "node_id": f"w{os.getpid()}"}
            )
            await store.upsert(sid, {"user_id": "alice@example.com", "conference_id": "c1"})
            await store.upsert(
                sid, {"state": "stored", "ended_at": now, "messages": 1000, "end_reason": "x"}
            )
            writes += 3

    await asyncio.gather(*(life() for _ in range(sessions)))
    await store.close()
    return writes


def _process(path: Path, sessions: int, start: float, out: multiprocessing.Queue[int]) -> None:
    out.put(asyncio.run(_write(path, sessions, start)))


def run(directory: Path, processes: int, sessions: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        path = Path(tmp) / "sessions.sqlite3"
        asyncio.run(_prepare(path))
        results: multiprocessing.Queue[int] = multiprocessing.Queue()
        start = time.time() + 1.0
        share = sessions // processes
        children = [
            multiprocessing.Process(target=_process, args=(path, share, start, results))
            for _ in range(processes)
        ]
        for child in children:
            child.start()
        writes = sum(results.get() for _ in children)
        ended = time.time()
        for child in children:
            child.join()
        return writes, ended - start


async def _prepare(path: Path) -> None:
    """Create the schema once, so no process times another's creation."""
    store = EmbeddedSessionStore(path)
    await store.open()
    await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=3000)
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    print(f"{'processes':>9}{'writes':>8}{'seconds':>9}{'writes/s':>10}")
    for processes in args.processes:
        writes, seconds = run(args.dir, processes, args.sessions)
        print(f"{processes:>9}{writes:>8}{seconds:>9.2f}{writes / seconds:>10.0f}")
    print(f"cpus {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; dir {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
