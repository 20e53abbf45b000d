"""The real jitsi client in Chromium, its socket dropped by the collector it streams to,
reconnects through HAProxy (round robin, three collectors) and ends as one session:
one record, one dump with every seq it sent exactly once."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from rtcstats_server.sessions.connection import CloseRequest
from tests.ops.cluster.test_haproxy import cluster_bed
from tests.services.browser import BrowserBed, browser_bed
from tests.services.collector import wait_until
from tests.services.ferretdb import FerretDB
from tests.services.seaweedfs import SeaweedFS

pytestmark = pytest.mark.browser


@pytest.fixture
async def bed() -> AsyncIterator[BrowserBed]:
    async with browser_bed() as started:
        yield started


async def test_jitsi_client_reconnecting_through_haproxy_is_one_session(
    tmp_path: Path,
    ferretdb: FerretDB,
    collection: str,
    bucket: SeaweedFS,
    shared_prefix: str,
    bed: BrowserBed,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rtcstats_server.sessions")
    async with cluster_bed(tmp_path, ferretdb.uri, collection, bucket, shared_prefix) as cluster:
        async with bed.call(
            "jitsi",
            cluster.balancer.ws_url,
            conf="room-cluster",
            user="erin",
            seconds=2,
            mode="resume",
        ) as page:
            state = await page.wait_phase("drop-me", timeout=60)
            url = state["sockets"][0]["url"]
            client_id = parse_qs(urlsplit(url).query)["statsSessionId"][0]
            (holder,) = [c for c in cluster.collectors if client_id in c.manager.by_client]
            connection = holder.manager.by_client[client_id].connection
            assert connection is not None
            connection.close(CloseRequest(1011, "test drops the socket"))
            await page.wait_phase("resumed", timeout=30)  # it retries after 1 to 11 s
            state = await page.finished(timeout=30)
            assert page.errors == []

        first, second = state["sockets"]
        assert state["clientCloses"] == [1011, 3001]
        api = cluster.collectors[0]

        async def stored() -> bool:
            found = await api.get_json(f"/v1/sessions?client_session_id={client_id}")
            return bool(found["sessions"]) and found["sessions"][0]["state"] == "stored"

        await wait_until(stored, timeout=60, what="the session stored")
        found = await api.get_json(f"/v1/sessions?client_session_id={client_id}")
        (record,) = found["sessions"]
        assert record["connections"] == 2 and record["end_reason"] == "conference_left"
        lines = (await cluster.collectors[2].dump_text(record["id"])).splitlines()
        events = [json.loads(line) for line in lines[2:-1]]
        last_sent = max(first["sentSeqs"] + second["sentSeqs"])
        assert [event[4] for event in events] == list(range(1, last_sent + 1))
        burst = [event[2]["i"] for event in events if event[0] == "harness.burst"]
        assert burst == list(range(1100))
        offline = [event[2]["i"] for event in events if event[0] == "harness.offline"]
        assert offline == list(range(20))
        # Where the two connections landed (round robin: most often two collectors).
        nodes = {
            entry.getMessage().split()[6]
            for entry in caplog.records
            if record["id"] in entry.getMessage() and " ended on " in entry.getMessage()
        }
        print(f"\nconnections streamed to {sorted(nodes)}")
        assert len(nodes) >= 1
