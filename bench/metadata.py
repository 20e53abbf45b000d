#!/usr/bin/env python3
"""Session-record store latency: embedded (SQLite) and MongoDB (FerretDB, or a real one).

Times what a session costs the store: the create, an identity update, the final
write (all upserts), then an API page query, an unfinished() lookup and spool
appends. Sequential latency (p50/p99 ms) and throughput with 32 writers at once.

    python bench/metadata.py [--sessions 500] [--mongodb-uri mongodb://...]

Without --mongodb-uri it starts FerretDB from the CI cache (scripts/install.d).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtcstats_server.metadata.base import SessionStore  # noqa: E402
from rtcstats_server.metadata.embedded import EmbeddedSessionStore  # noqa: E402
from rtcstats_server.metadata.mongodb import MongoSessionStore  # noqa: E402
from rtcstats_server.metadata.record import SessionQuery  # noqa: E402
from rtcstats_server.metadata.spool import WriteSpool  # noqa: E402
from tests.services.ferretdb import FerretDB  # noqa: E402

T0 = datetime(2024, 5, 1, tzinfo=UTC)


async def timed(calls: list[Callable[[], Awaitable[object]]]) -> list[float]:
    out = []
    for call in calls:
        began = time.perf_counter()
        await call()
        out.append((time.perf_counter() - began) * 1000)
    return out


def line(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"  {name:<28} p50 {statistics.median(ms):7.2f} ms   p99 {p99:7.2f} ms   n={len(ms)}"


def session_writes(n: int) -> list[tuple[str, dict[str, object]]]:
    writes: list[tuple[str, dict[str, object]]] = []
    for i in range(n):
        sid = uuid.uuid4().hex
        started = T0 + timedelta(seconds=i)
        writes.append((sid, {"state": "streaming", "started_at": started, "node_id": "bench"}))
        writes.append((sid, {"conference_id": f"room-{i % 50}", "user_id": f"u{i}"}))
        writes.append((sid, {"state": "stored", "messages": 1000, "end_reason": "client_closed"}))
    return writes


async def bench_store(name: str, store: SessionStore, sessions: int, writers: int) -> None:
    await store.open()
    try:
        writes = session_writes(sessions)
        upserts = await timed([lambda s=s, f=f: store.upsert(s, f) for s, f in writes])
        queries = await timed(
            [
                lambda i=i: store.query(SessionQuery(equals={"conference_id": f"room-{i}"}))
                for i in range(50)
            ]
            + [lambda: store.query(SessionQuery(limit=100)) for _ in range(50)]
        )
        unfinished = await timed([lambda: store.unfinished("bench") for _ in range(20)])
        print(f"{name}:")
        print(line("upsert (sequential)", upserts))
        print(line("query (page of <=100)", queries))
        print(line("unfinished(node)", unfinished))
        concurrent = session_writes(sessions)
        began = time.perf_counter()
        # ``writers`` sessions at a time, each session's writes in order (as one collector does).
        queue = [concurrent[i : i + 3] for i in range(0, len(concurrent), 3)]

        async def writer() -> None:
            while queue:
                for sid, fields in queue.pop():
                    await store.upsert(sid, fields)

        await asyncio.gather(*(writer() for _ in range(writers)))
        rate = len(concurrent) / (time.perf_counter() - began)
        print(f"  {f'upsert, {writers} writers':<28} {rate:8.0f} upserts/s")
    finally:
        await store.close()


async def bench_spool(directory: Path, n: int) -> None:
    spool = WriteSpool(directory)
    await spool.open()
    fields = {"state": "stored", "started_at": T0, "messages": 1000, "user_id": "u"}
    appends = await timed([lambda: spool.append(uuid.uuid4().hex, fields) for _ in range(n)])
    print("spool (outage path):")
    print(line("append (fsynced)", appends))
    await spool.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--writers", type=int, default=8, help="sessions written at once")
    parser.add_argument("--mongodb-uri")
    parser.add_argument(
        "--uri-options", default="", help="appended to FerretDB's URI, e.g. maxPoolSize=1"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        await bench_store(
            "embedded (SQLite)", EmbeddedSessionStore(work / "s.db"), args.sessions, args.writers
        )
        if args.mongodb_uri:
            store = MongoSessionStore(args.mongodb_uri, "rtcstats_bench", uuid.uuid4().hex, 5)
            await bench_store("mongodb", store, args.sessions, args.writers)
        else:
            with FerretDB(work / "ferretdb") as server:
                uri = f"{server.uri}?{args.uri_options}" if args.uri_options else server.uri
                store = MongoSessionStore(uri, "rtcstats_bench", "sessions", 5)
                name = "mongodb wire protocol (FerretDB 1.24.2, SQLite)"
                await bench_store(name, store, args.sessions, args.writers)
        await bench_spool(work / "spool", 500)


if __name__ == "__main__":
    asyncio.run(main())
