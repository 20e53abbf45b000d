"""The features API on a live collector holding analysed sessions: one session's
features, every session's as JSON lines (read back by DuckDB), pages of the store."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import orjson
import pytest

from rtcstats_server.http.features import PAGE
from rtcstats_server.http.keys import RECORDS
from tests.metadata.test_collectors_on_mongodb import mongo_settings
from tests.services.collector import RunningCollector, run_collector
from tests.services.ferretdb import FerretDB
from tests.services.stored_dumps import store_dump_file

CAPTURE = "captured/rtcstats-js-2.4.0-loopback-call.ws.jsonl"


async def jsonl(collector: RunningCollector, query: str) -> list[dict[str, Any]]:
    async with collector.http.get(collector.base_url + "/v1/features.jsonl" + query) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "application/x-ndjson"
        body = await response.read()
    assert body == b"" or body.endswith(b"\n")
    return [orjson.loads(line) for line in body.splitlines()]


async def test_one_sessions_features(collector: RunningCollector, fixtures_dir: Path) -> None:
    session = await store_dump_file(collector, fixtures_dir / CAPTURE)
    body = await collector.get_json(f"/v1/sessions/{session}/features")
    assert body["id"] == session and body["started_at"]
    features = body["features"]
    assert [c["id"] for c in features["connections"]] == ["PC_0", "PC_1"]
    tracks = {t["stats_id"]: t for t in features["connections"][1]["tracks"]}
    assert tracks["12"]["frame_count"] == 278 and tracks["12"]["direction"] == "inbound"
    assert features["client"]["web_socket_connection_time"] == 67
    # the record has them; the compact listing leaves them out, the full one not
    assert (await collector.get_json(f"/v1/sessions/{session}"))["features"] == features
    listed = (await collector.get_json("/v1/sessions"))["sessions"][0]
    assert "features" not in listed
    full = (await collector.get_json("/v1/sessions?fields=full"))["sessions"][0]
    assert full["features"] == features


async def test_no_features_is_a_404(collector: RunningCollector, fixtures_dir: Path) -> None:
    unknown = await collector.get_json("/v1/sessions/" + "0" * 32 + "/features", 404)
    assert unknown["error"] == "not_found"
    waiting = await store_dump_file(collector, fixtures_dir / CAPTURE)
    await collector.app[RECORDS].update(waiting, {"features": None})  # as before analysis
    body = await collector.get_json(f"/v1/sessions/{waiting}/features", 404)
    assert "not analysed" in body["detail"]


@pytest.mark.parametrize(
    "query",
    ["?level=session", "?since=yesterday", "?until=99999999999999999", "?limit=5"],
)
async def test_bad_parameters_are_400(collector: RunningCollector, query: str) -> None:
    async with collector.http.get(collector.base_url + "/v1/features.jsonl" + query) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "bad_filter"


async def test_rows_of_every_session_across_pages(
    collector: RunningCollector, fixtures_dir: Path, tmp_path: Path
) -> None:
    """More sessions than a page: each appears once, newest first, at every level."""
    sessions = [await store_dump_file(collector, fixtures_dir / CAPTURE) for _ in range(PAGE + 3)]
    clients = await jsonl(collector, "?level=client")
    assert sorted(row["session_id"] for row in clients) == sorted(sessions)
    starts = [row["started_at"] for row in clients]
    assert starts == sorted(starts, reverse=True)
    assert {row["start_time"] for row in clients} == {1795483241574}

    connections = await jsonl(collector, "")  # level=connection by default
    assert len(connections) == 2 * len(sessions)
    assert {row["connection_id"] for row in connections} == {"PC_0", "PC_1"}
    assert all("tracks" not in row and "id" not in row for row in connections)

    tracks = await jsonl(collector, "?level=track")
    assert len(tracks) == 4 * len(sessions)
    assert {(row["connection_id"], row["stats_id"]) for row in tracks} == {
        ("PC_0", "8"),
        ("PC_0", "9"),
        ("PC_1", "5"),
        ("PC_1", "12"),
    }

    # since/until select by the session's start
    newest = quote(clients[0]["started_at"])
    assert [r["session_id"] for r in await jsonl(collector, f"?level=client&since={newest}")] == [
        clients[0]["session_id"]
    ]
    assert len(await jsonl(collector, f"?level=client&until={newest}")) == len(sessions) - 1

    # what the docs promise: the file reads straight into DuckDB
    path = tmp_path / "connections.jsonl"
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in connections))
    table = duckdb.sql(
        f"select connection_id, count(*) as n, max(ice_connection_time) as ice "
        f"from read_json_auto('{path}') group by connection_id order by connection_id"
    ).fetchall()
    assert table == [("PC_0", len(sessions), 2), ("PC_1", len(sessions), 28)]


async def test_features_on_a_mongodb_store(
    ferretdb: FerretDB, fixtures_dir: Path, tmp_path: Path
) -> None:
    """The same through the MongoDB store (FerretDB): the features document is stored
    and read back whole, and the rows page over the store."""
    settings = mongo_settings(ferretdb.uri, f"features_{uuid.uuid4().hex[:8]}")
    async with run_collector(tmp_path / "data", settings) as collector:
        sessions = [await store_dump_file(collector, fixtures_dir / CAPTURE) for _ in range(3)]
        body = await collector.get_json(f"/v1/sessions/{sessions[0]}/features")
        assert body["features"]["client"]["user_agent_data"]["platform"] == "Linux"
        tracks = await jsonl(collector, "?level=track")
        assert sorted({row["session_id"] for row in tracks}) == sorted(sessions)
        assert len(tracks) == 12
