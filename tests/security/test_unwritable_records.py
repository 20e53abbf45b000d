"""Records that could not be written (issue 14, item 3), on MongoDB (FerretDB).

Reported: a client seq >= 2^63 raised OverflowError in PyMongo and a session of 20,000
peer connections made a 20.8 MB record (DocumentTooLarge); either left the session
``streaming`` forever, its dump orphaned. Now a seq outside int64 is refused at decode
and the summary is capped, so every record is written, under 1 MiB, with its dump.
The big session runs in a collector process of its own under an address-space limit,
so a regression fails the test instead of the machine; its RSS is printed.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import bson
import pytest
from pymongo import MongoClient

from rtcstats_server.metadata.record import MAX_RECORD_BYTES
from tests.services.collector import analysed, run_collector, wait_until
from tests.services.ferretdb import FerretDB
from tests.services.process import CollectorProcess
from tests.services.session_stores import TEST_DATABASE, mongo_collection

#: The big session's collector may map this much; a runaway summary fails, not the host.
ADDRESS_SPACE_LIMIT = 3 << 30
PEER_CONNECTIONS = 20_000
T0 = 1_700_000_000_000


@pytest.fixture
def collection(ferretdb: FerretDB) -> Iterator[str]:
    with mongo_collection(ferretdb.uri) as name:
        yield name


def stored_document(uri: str, collection: str) -> dict[str, Any]:
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        (document,) = client[TEST_DATABASE][collection].find({})
        return document
    finally:
        client.close()


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")


def file_size(path: Path) -> int:
    return os.path.getsize(path)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def test_seq_beyond_int64_is_refused_and_the_session_stored(
    tmp_path: Path, ferretdb: FerretDB, collection: str
) -> None:
    settings = {
        "metadata": {
            "backend": "mongodb",
            "uri": ferretdb.uri,
            "database": TEST_DATABASE,
            "collection": collection,
        },
        "dumps": {"flush_interval_s": 0.2},
    }
    sid = "int64-overflow"

    def entry(seq: int) -> str:
        data = json.dumps(["getstats", "PC_0", {"n": 1}, T0 + seq % 1000, seq])
        return json.dumps({"statsSessionId": sid, "type": "stats-entry", "data": data})

    async with run_collector(tmp_path / "data", settings) as collector:
        target = f"{collector.ws_url}/room?statsSessionId={sid}&isReconnect=false"
        async with collector.http.ws_connect(target, protocols=("3.1_STANDARD",)) as ws:
            await ws.receive_json(timeout=5)
            for seq in (1, 2, 3, 1 << 63, (1 << 64) - 1, 4, 5):
                await ws.send_str(entry(seq))
            await ws.close(code=3001)
        await collector.wait_for_record(lambda r: r["state"] == "stored" and "viewer_url" in r)
        document = stored_document(ferretdb.uri, collection)
        assert document["state"] == "stored" and document["end_reason"] == "conference_left"
        assert document["last_seq"] == 5 and document["dropped_messages"] == 2
        assert document["dump_key"] and document["dump_bytes"] > 0
        lines = (await collector.dump_text(document["_id"])).splitlines()[2:-1]
        assert [json.loads(line)[4] for line in lines] == [1, 2, 3, 4, 5]
        text = await collector.metrics_text()
        assert 'rtcstats_messages_dropped_total{reason="seq_out_of_range"} 2.0' in text


AUDIO_IN = {"type": "inbound-rtp", "kind": "audio", "packetsReceived": 500, "jitter": 0.01}


def connection_events(n: int) -> list[str]:
    """One connection that connects, fails, and reports media once: six messages."""
    pc = f"PC_{n}"
    at = T0 + n
    events = [
        ["create", pc, {"iceServers": []}, at],
        ["oniceconnectionstatechange", pc, "checking", at + 1],
        ["oniceconnectionstatechange", pc, "connected", at + 2],
        ["oniceconnectionstatechange", pc, "failed", at + 3],
        ["onconnectionstatechange", pc, "failed", at + 4],
        ["getstats", pc, {"in": AUDIO_IN, "timestamp": at + 5}, at + 5],
    ]
    return [json.dumps(event) for event in events]


async def test_twenty_thousand_peer_connections_make_a_small_record(
    tmp_path: Path, ferretdb: FerretDB, collection: str
) -> None:
    data_dir = tmp_path / "data"
    env = {
        "RTCSTATS_METADATA__BACKEND": "mongodb",
        "RTCSTATS_METADATA__URI": ferretdb.uri,
        "RTCSTATS_METADATA__DATABASE": TEST_DATABASE,
        "RTCSTATS_METADATA__COLLECTION": collection,
        "RTCSTATS_SERVER__HOST": "127.0.0.1",
        "RTCSTATS_SERVER__DATA_DIR": str(data_dir),
        # Address space per malloc arena is 64 MiB, arenas up to 8 per core: fixed at
        # two so the limit means the same on a many-core CI host.
        "MALLOC_ARENA_MAX": "2",
    }
    command = [
        "prlimit", f"--as={ADDRESS_SPACE_LIMIT}", "--",
        sys.executable, "-m", "rtcstats_server", "serve",
    ]  # fmt: skip
    process = CollectorProcess(data_dir, env=env, command=command, cwd=Path.cwd())
    process.start()
    assert process.proc is not None
    try:
        async with aiohttp.ClientSession() as http:
            await process.wait_healthy(http)
            pid = process.proc.pid
            assert "rtcstats_server" in command_line(pid)  # prlimit exec'd it: same pid
            before = rss_bytes(pid)
            async with http.ws_connect(process.ws_url + "/many", protocols=("2.0",)) as ws:
                await ws.send_str(json.dumps(["identity", None, {"confName": "big"}, T0]))
                for n in range(PEER_CONNECTIONS):
                    for message in connection_events(n):
                        await ws.send_str(message)
                await ws.close()
            peak = rss_bytes(pid)

            async def stored() -> bool:
                async with http.get(process.base_url + "/v1/sessions") as response:
                    sessions = (await response.json())["sessions"]
                return bool(sessions) and analysed(sessions[0])  # the last write

            await wait_until(stored, timeout=120, what="the big session stored and analysed")
            after = rss_bytes(pid)
            async with http.get(process.base_url + "/v1/sessions") as response:
                (record,) = (await response.json())["sessions"]
            async with http.get(record["viewer_url"]) as response:
                assert response.status == 200
                page = await response.text()
            with_viewer = rss_bytes(pid)
    finally:
        code, _ = await process.terminate()
    assert code == 0, process.log()
    print(
        f"\ncollector RSS: before {before / 2**20:.1f} MiB, after streaming "
        f"{peak / 2**20:.1f} MiB, after the record {after / 2**20:.1f} MiB, after the "
        f"viewer page {with_viewer / 2**20:.1f} MiB"
    )

    document = stored_document(ferretdb.uri, collection)
    size = len(bson.encode(document))
    print(f"record: {size} bytes of BSON (the report: 20.8 MB)")
    assert size < MAX_RECORD_BYTES
    assert document["end_reason"] == "client_closed" and document["dump_key"]
    quality = document["quality"]
    assert quality["truncated"] is True
    assert document["pc_count"] == PEER_CONNECTIONS
    assert quality["omitted"]["peer_connections"] == PEER_CONNECTIONS - 50
    assert {"ice_failed", "connection_failed"} <= set(document["findings"])
    assert "further peer connections not shown" in page
    # the summary must not hold the whole session in memory
    assert after - before < 256 << 20, (before, after)
    assert file_size(data_dir / "dumps" / document["dump_key"]) == document["dump_bytes"]
