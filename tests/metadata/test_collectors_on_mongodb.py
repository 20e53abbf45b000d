"""Whole collectors on one MongoDB (FerretDB): an outage with a restart, two processes.

Clients stream real fixture sessions over websockets; the assertions read the
collection directly, as a customer's backend would.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from rtcstats_server.http.keys import RECORDS
from rtcstats_server.metadata.mongodb import MongoSessionStore
from rtcstats_server.metadata.spool import SpoolingSessionStore
from tests.services import streams
from tests.services.collector import RunningCollector, run_collector, wait_until
from tests.services.ferretdb import FerretDB
from tests.services.session_stores import TEST_DATABASE, mongo_collection

FIXTURE = "jitsi-firefox97-standard-stats-sfu.jsonl"


def mongo_settings(uri: str, collection: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """``timeout_s``: short only where a test takes the database away on purpose; a
    loaded 2-core machine can make FerretDB answer a write slowly."""
    return {
        "metadata": {
            "backend": "mongodb",
            "uri": uri,
            "database": TEST_DATABASE,
            "collection": collection,
            "timeout_s": timeout_s,
            "retry_interval_s": 0.1,
        }
    }


async def stream_session(collector: RunningCollector, stream: streams.Stream) -> None:
    async with collector.http.ws_connect(
        collector.ws_url + stream.path, protocols=(stream.subprotocol,)
    ) as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "sn"
        for message in stream.messages:
            await ws.send_str(message)
        await ws.close(code=stream.close_code)


async def stream_sessions(
    collector: RunningCollector, fixtures: Path, client_ids: list[str]
) -> None:
    """One session per client id, all at once; returns when each is finished."""
    sessions = [streams.jitsi_disk_dump(fixtures, FIXTURE, client_id) for client_id in client_ids]
    await asyncio.gather(*(stream_session(collector, s) for s in sessions))
    manager = collector.manager
    await wait_until(lambda: not manager.sessions, what="every session finished")


async def readiness(collector: RunningCollector) -> tuple[int, dict[str, Any]]:
    async with collector.http.get(collector.base_url + "/readyz") as response:
        return response.status, await response.json()


async def metric_values(collector: RunningCollector) -> dict[str, float]:
    """Unlabelled samples of /metrics, by name."""
    async with collector.http.get(collector.base_url + "/metrics") as response:
        text = await response.text()
    return {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in text.splitlines())
        if name and not name.startswith("#") and "{" not in name
    }


async def stored_documents(uri: str, collection: str) -> list[dict[str, Any]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True)
    try:
        return await client[TEST_DATABASE][collection].find({}).to_list()
    finally:
        await client.close()


def expected_messages(fixtures: Path) -> int:
    return len(streams.jitsi_disk_dump(fixtures, FIXTURE).messages)


@pytest.fixture
def own_ferretdb(tmp_path: Path) -> Iterator[FerretDB]:
    """A server of this test alone: the test stops and restarts it."""
    with FerretDB(tmp_path / "ferretdb") as server:
        yield server


@pytest.fixture
def collection(ferretdb: FerretDB) -> Iterator[str]:
    with mongo_collection(ferretdb.uri) as name:
        yield name


async def test_outage_with_a_restart_loses_nothing_and_applies_nothing_twice(
    own_ferretdb: FerretDB, tmp_path: Path, fixtures_dir: Path
) -> None:
    settings = mongo_settings(own_ferretdb.uri, "sessions", timeout_s=1.0)
    data = tmp_path / "data"
    client_ids = [f"outage-{n:02d}" for n in range(20)]

    async with run_collector(data, settings) as first:
        status, body = await readiness(first)
        assert (status, body["status"]) == (200, "ready")
        # One session is live, its record written through, when the database goes.
        early = streams.jitsi_disk_dump(fixtures_dir, FIXTURE, client_ids[0])
        async with first.http.ws_connect(
            first.ws_url + early.path, protocols=(early.subprotocol,)
        ) as ws:
            await ws.receive_json(timeout=5)
            await ws.send_str(early.messages[0])
            await first.wait_for_record(lambda r: r["client_session_id"] == client_ids[0])
            await asyncio.to_thread(own_ferretdb.stop)
            for message in early.messages[1:]:
                await ws.send_str(message)
            await ws.close(code=early.close_code)
        await stream_sessions(first, fixtures_dir, client_ids[1:10])
        status, body = await readiness(first)
        assert (status, body["status"]) == (200, "degraded")  # still ingesting
        assert "record writes spooled locally" in body["problems"]["metadata"]
        gauges = await metric_values(first)
        assert gauges["rtcstats_metadata_up"] == 0
        assert gauges["rtcstats_metadata_spooled_writes"] >= 10

    # Restarted while the database is still away: starts, ingests, spools.
    async with run_collector(data, settings) as second:
        status, body = await readiness(second)
        assert (status, body["status"]) == (200, "degraded")
        await stream_sessions(second, fixtures_dir, client_ids[10:])
        async with second.http.get(second.base_url + "/v1/sessions") as response:
            assert response.status == 503
            assert (await response.json())["error"] == "store_unavailable"

        await asyncio.to_thread(own_ferretdb.start)  # same data, same port
        await wait_until(
            lambda: readiness_is(second, "ready"), timeout=20, what="database back, spool replayed"
        )
        docs = await stored_documents(own_ferretdb.uri, "sessions")
        gauges = await metric_values(second)
        assert (gauges["rtcstats_metadata_up"], gauges["rtcstats_metadata_spooled_writes"]) == (
            1,
            0,
        )
        page = await second.get_json("/v1/sessions?limit=100")

    per_client = Counter(doc["client_session_id"] for doc in docs)
    assert sorted(per_client) == client_ids
    assert set(per_client.values()) == {1}  # none twice
    assert len(docs) == len(page["sessions"]) == 20
    messages = expected_messages(fixtures_dir)
    for doc in docs:
        assert (doc["state"], doc["end_reason"], doc["close_code"]) == (
            "stored",
            "conference_left",
            3001,
        ), doc["client_session_id"]
        assert doc["messages"] == messages
        assert doc["dump_key"] and doc["dump_bytes"] > 0
    assert not any((data / "metadata-spool" / "records.msgpack").read_bytes())


async def test_crash_recovery_waits_for_the_database(
    own_ferretdb: FerretDB, tmp_path: Path
) -> None:
    """A session cut by a crash during an outage is finished as ``recovered`` once the
    database is back and the spool (which holds its creation) is replayed."""
    settings = mongo_settings(own_ferretdb.uri, "sessions", timeout_s=1.0)
    settings["server"] = {"node_id": "crashed-node"}
    data = tmp_path / "data"
    await asyncio.to_thread(own_ferretdb.stop)
    # What a collector killed mid-session leaves behind: the creating write, spooled.
    crashed = SpoolingSessionStore(
        MongoSessionStore(own_ferretdb.uri, TEST_DATABASE, "sessions", timeout_s=1.0),
        data / "metadata-spool",
        retry_interval_s=0.1,
    )
    await crashed.open()
    started = datetime.now(UTC)
    fields = {"state": "streaming", "started_at": started, "node_id": "crashed-node"}
    await crashed.upsert("c" * 32, {**fields, "updated_at": started})
    await crashed.close()

    async with run_collector(data, settings) as collector:  # starts with the DB away
        # A client streams through the outage: the late recovery must leave it alone.
        target = f"{collector.ws_url}/room?statsSessionId=live-1&isReconnect=false"
        async with collector.http.ws_connect(target, protocols=("3.1_STANDARD",)) as ws:
            await ws.receive_json(timeout=5)
            line = json.dumps(["getstats", "PC_0", {}, 1_700_000_000_000, 1])
            await ws.send_str(json.dumps({"type": "stats-entry", "data": line}))
            (live,) = collector.manager.sessions.values()
            await wait_until(lambda: live.recorded, what="its record (spooled)")
            await asyncio.to_thread(own_ferretdb.start)
            await wait_until(
                lambda: readiness_is(collector, "ready"), timeout=20, what="database back"
            )

            async def recovered() -> bool:
                record = await collector.app[RECORDS].get("c" * 32)
                return record is not None and record["state"] == "stored"

            await wait_until(recovered, timeout=20, what="postponed crash recovery")
            record = await collector.get_json("/v1/sessions/" + "c" * 32)
            still = await collector.get_json(f"/v1/sessions/{live.id}")
            assert still["state"] == "streaming" and live.state.value == "streaming"
            await ws.close(code=3001)
        ended = await collector.wait_for_record(lambda r: r["id"] == live.id and r["dump_key"])
    assert (record["end_reason"], record["close_code"]) == ("recovered", 1006)
    assert ended["end_reason"] == "conference_left"


async def readiness_is(collector: RunningCollector, status: str) -> bool:
    return (await readiness(collector))[1]["status"] == status


async def test_two_collectors_share_one_database(
    ferretdb: FerretDB, collection: str, tmp_path: Path, fixtures_dir: Path
) -> None:
    settings = mongo_settings(ferretdb.uri, collection)
    ids_a = [f"node-a-{n:02d}" for n in range(10)]
    ids_b = [f"node-b-{n:02d}" for n in range(10)]
    async with (
        run_collector(tmp_path / "a", settings) as a,
        run_collector(tmp_path / "b", settings) as b,
    ):
        await asyncio.gather(
            stream_sessions(a, fixtures_dir, ids_a), stream_sessions(b, fixtures_dir, ids_b)
        )
        # Each collector serves the other's records: one database.
        seen_by_a = await a.get_json("/v1/sessions?limit=100")
        seen_by_b = await b.get_json("/v1/sessions?limit=100")
        node_a, node_b = a.manager.node_id, b.manager.node_id
    assert node_a != node_b

    docs = await stored_documents(ferretdb.uri, collection)
    assert len(docs) == len({doc["_id"] for doc in docs}) == 20
    assert [r["id"] for r in seen_by_a["sessions"]] == [r["id"] for r in seen_by_b["sessions"]]
    by_node = {
        node: sorted(d["client_session_id"] for d in docs if d["node_id"] == node)
        for node in (node_a, node_b)
    }
    assert by_node == {node_a: ids_a, node_b: ids_b}
    messages = expected_messages(fixtures_dir)
    # No update lost: every record holds its final counts, not a live snapshot.
    assert {(d["state"], d["messages"]) for d in docs} == {("stored", messages)}
