"""Three collectors behind a real HAProxy (round robin, no stickiness) on one FerretDB
and one SeaweedFS bucket: clients that drop and come back on any collector end as one
session each, whose dump holds every seq exactly once."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.ops.cluster.cluster import Client31, cluster_settings
from tests.services.collector import RunningCollector, run_collector
from tests.services.ferretdb import FerretDB
from tests.services.haproxy import HAProxy
from tests.services.seaweedfs import SeaweedFS

CLIENTS = int(os.environ.get("CLUSTER_CLIENTS", "30"))
PER_CONNECTION = 30


@dataclass
class Bed:
    collectors: list[RunningCollector]
    balancer: HAProxy
    http: aiohttp.ClientSession


@asynccontextmanager
async def cluster_bed(
    tmp_path: Path, uri: str, collection: str, bucket: SeaweedFS, prefix: str
) -> AsyncIterator[Bed]:
    async with AsyncExitStack() as stack:
        collectors = [
            await stack.enter_async_context(
                run_collector(
                    tmp_path / f"node-{n}",
                    # A loaded 2-core machine runs all of it: seconds may pass between a
                    # drop and the resume that the balancer accepts.
                    cluster_settings(
                        f"node-{n}", uri, collection, bucket, prefix, resume_grace_s=20.0
                    ),
                )
            )
            for n in range(1, 4)
        ]
        balancer = HAProxy(tmp_path / "haproxy", [c.port for c in collectors])
        await asyncio.to_thread(balancer.start)
        stack.callback(balancer.stop)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        yield Bed(collectors, balancer, http)


async def run_client(bed: Bed, sid: str) -> None:
    client = Client31(bed.http, bed.balancer.ws_url, sid)
    for connection in range(3):
        await client.connect()
        await client.send(PER_CONNECTION)
        # A real client streams a while before its socket drops: its first entries
        # are durable (and the session recorded) by then.
        await client.wait_acked(client.next_seq - PER_CONNECTION + 19)
        if connection < 2:
            await client.drop()
    await client.leave()


async def test_thirty_clients_dropping_twice_end_as_thirty_sessions(
    tmp_path: Path,
    ferretdb: FerretDB,
    collection: str,
    bucket: SeaweedFS,
    shared_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rtcstats_server.sessions")
    async with cluster_bed(tmp_path, ferretdb.uri, collection, bucket, shared_prefix) as bed:
        sids = [f"drop-twice-{n:02d}" for n in range(CLIENTS)]
        await asyncio.gather(*(run_client(bed, sid) for sid in sids))
        first = bed.collectors[0]

        def all_stored(record: dict[str, object]) -> bool:
            return record["state"] == "stored"

        deadline = time.monotonic() + 120
        while True:
            page = await first.get_json("/v1/sessions?limit=1000")
            records = page["sessions"]
            if len(records) >= CLIENTS and all(all_stored(r) for r in records):
                break
            states = Counter(str(r["state"]) for r in records)
            assert time.monotonic() < deadline, (len(records), states)
            await asyncio.sleep(0.2)
        assert sorted(r["client_session_id"] for r in records) == sids
        expected = list(range(1, 3 * PER_CONNECTION + 1))
        for n, record in enumerate(records):
            collector = bed.collectors[n % 3]  # any collector serves any dump
            lines = (await collector.dump_text(record["id"])).splitlines()
            seqs = [json.loads(line)[4] for line in lines[2:-1]]
            assert seqs == expected, (record["client_session_id"], seqs)
            assert record["connections"] == 3 and record["last_seq"] == expected[-1]
        # The balancer really spread each client's connections over the collectors.
        nodes: dict[str, set[str]] = {}
        for entry in caplog.records:
            if entry.getMessage().startswith("session ") and " ended on " in entry.getMessage():
                words = entry.getMessage().split()
                nodes.setdefault(words[1].rstrip(":"), set()).add(words[6])
        spread = sorted(len(names) for names in nodes.values())
        print(f"\ncollectors per session: {spread}")
        assert len(nodes) == CLIENTS
        assert sum(1 for count in spread if count > 1) >= CLIENTS // 2
