"""The queries docs/features.md shows, run as written against real engines.

Every query block there is preceded by ``<!-- query: <engine> <name>; ... -->``. The
MongoDB pipelines run on FerretDB (our MongoDB-wire server) holding a few session
records: those the docs mark as running there give the right answer; for the others
FerretDB answers what the docs say (an operator "not implemented", or ``$unwind``
dropping the document's other fields), so the docs stay true when it changes. The SQL
runs in DuckDB over the JSON lines ``GET /v1/features.jsonl`` writes (its ``rows``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from bson import json_util
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from rtcstats_server.cli.features_reference import MARKDOWN_PATH
from rtcstats_server.http.features import LEVELS, rows
from tests.services.ferretdb import FerretDB

_BLOCK = re.compile(r"<!-- query: (\w+) (\w+)(?:; ferretdb ([^>]*?))? -->\n```\w+\n(.*?)```", re.S)


@dataclass(frozen=True)
class Query:
    engine: str  # mongodb | duckdb
    name: str
    ferretdb: str | None  # runs | unwind | lacks $x $y
    text: str


def documented() -> dict[tuple[str, str], Query]:
    text = MARKDOWN_PATH.read_text(encoding="utf-8")
    found = [Query(*match.groups()) for match in _BLOCK.finditer(text)]
    return {(q.engine, q.name): q for q in found}


def pipeline(js: str) -> list[dict[str, Any]]:
    """``db.sessions.aggregate([...])`` as written in the docs, as a pipeline: bare
    keys quoted, ``ISODate("…")`` as extended JSON."""
    body = js.strip().removeprefix("db.sessions.aggregate(").removesuffix(")")
    body = re.sub(r'ISODate\("([^"]+)"\)', r'{"$date": "\1T00:00:00Z"}', body)
    body = re.sub(r"([{,\[]\s*)([$A-Za-z_][\w$]*)\s*:", r'\1"\2":', body)
    parsed: list[dict[str, Any]] = json_util.loads(body)
    return parsed


def connection(
    pc: str, local_type: str, ice: int, relay: str | None = None, tracks: Any = ()
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": pc,
        "first_candidate_pair_local_type": local_type,
        "ice_connection_time": ice,
        "connected": True,
        "tracks": list(tracks),
    }
    if relay is not None:
        values["first_candidate_pair_local_relay_protocol"] = relay
    return values


def video(stats_id: str, decoder: str, freezes: int, frozen: float) -> dict[str, Any]:
    return {
        "stats_id": stats_id,
        "kind": "video",
        "direction": "inbound",
        "decoder_implementation": decoder,
        "freeze_count": freezes,
        "total_freezes_duration": frozen,
    }


def session(
    n: int, browser: str, country: str | None, connections: list[dict[str, Any]]
) -> dict[str, Any]:
    client: dict[str, Any] = {"start_time": 1_793_000_000_000 + n}
    if country is not None:
        client["location_country"] = country
    return {
        "_id": f"{n:032x}",
        "id": f"{n:032x}",
        "browser": browser,
        "os": "Linux",
        "started_at": datetime(2026, 11, 2 + n, tzinfo=UTC),
        "features": {"version": 1, "client": client, "connections": connections},
    }


SESSIONS = [
    session(
        1,
        "Chrome",
        "Sweden",
        [
            connection("PC_0", "relay", 10, "udp"),
            connection("PC_1", "host", 30, tracks=[video("v1", "libvpx", 0, 0.0)]),
        ],
    ),
    session(2, "Chrome", "Sweden", [connection("PC_0", "host", 50)]),
    session(
        3,
        "Firefox",
        "Germany",
        [connection("PC_0", "relay", 200, "tcp", [video("v2", "ExternalDecoder", 5, 4.0)])],
    ),
    session(
        4,
        "Firefox",
        "Germany",
        [connection("PC_0", "srflx", 100, None, [video("v3", "libvpx", 2, 1.5)])],
    ),
    session(5, "Safari", None, [connection("PC_0", "relay", 70, "tls")]),
    session(6, "Chrome", "Sweden", []),
]


@pytest.fixture(scope="module")
def queries() -> dict[tuple[str, str], Query]:
    found = documented()
    assert {name for engine, name in found if engine == "duckdb"} == {
        "relayed_share",
        "p95_ice_by_country",
        "freezing_decoders",
    }
    assert len([key for key in found if key[0] == "mongodb"]) == 7
    return found


@pytest.fixture
def sessions(ferretdb: FerretDB) -> Iterator[Any]:
    client: MongoClient[dict[str, Any]] = MongoClient(ferretdb.uri, tz_aware=True)
    collection = client["features_docs"]["sessions"]
    collection.drop()
    collection.insert_many([dict(s) for s in SESSIONS])
    yield collection
    collection.drop()
    client.close()


def _run(collection: Any, query: Query) -> list[dict[str, Any]]:
    return list(collection.aggregate(pipeline(query.text)))


def test_the_ferretdb_pipelines_answer_right(
    queries: dict[tuple[str, str], Query], sessions: Any
) -> None:
    runs = {name: q for (engine, name), q in queries.items() if q.ferretdb == "runs"}
    assert set(runs) == {"sessions_by_browser", "relayed_by_browser"}
    assert _run(sessions, runs["sessions_by_browser"]) == [
        {"_id": "Chrome", "sessions": 2},
        {"_id": "Firefox", "sessions": 2},
        {"_id": "Safari", "sessions": 1},
    ]
    assert _run(sessions, runs["relayed_by_browser"]) == [
        {"_id": "Chrome", "relayed": 1},
        {"_id": "Firefox", "relayed": 1},
        {"_id": "Safari", "relayed": 1},
    ]


def test_ferretdb_lacks_what_the_docs_say(
    queries: dict[tuple[str, str], Query], sessions: Any
) -> None:
    for query in queries.values():
        if query.ferretdb is None or not query.ferretdb.startswith("lacks"):
            continue
        lacking = query.ferretdb.split()[1:]
        with pytest.raises(OperationFailure) as refused:
            _run(sessions, query)
        message = str(refused.value)
        assert "not implemented" in message, message
        assert any(f'{operator}"' in message or f"{operator} " in message for operator in lacking)


def test_ferretdb_unwind_drops_the_other_fields(
    queries: dict[tuple[str, str], Query], sessions: Any
) -> None:
    """Why the unwinding pipelines are not for FerretDB: grouped by browser and relay
    transport, its answer has lost the browser (MongoDB: Chrome udp, Firefox tcp, Safari
    tls, one each)."""
    query = queries["mongodb", "relay_transports"]
    assert query.ferretdb == "unwind"
    answer = _run(sessions, query)
    assert all("browser" not in row["_id"] for row in answer)


async def test_the_duckdb_queries_over_the_jsonl_rows(
    queries: dict[tuple[str, str], Query], tmp_path: Path
) -> None:
    def write() -> None:
        for level in LEVELS:
            lines = [orjson.dumps(row) + b"\n" for s in SESSIONS for row in rows(s, level)]
            (tmp_path / f"{level}.jsonl").write_bytes(b"".join(lines))

    await asyncio.to_thread(write)

    def run(name: str) -> list[tuple[Any, ...]]:
        connection = duckdb.connect()
        try:
            connection.execute(f"SET file_search_path = '{tmp_path}'")
            return connection.sql(queries["duckdb", name].text).fetchall()
        finally:
            connection.close()

    assert run("relayed_share") == [
        ("Chrome", 2, 1, 0.5),
        ("Firefox", 2, 1, 0.5),
        ("Safari", 1, 1, 1.0),
    ]
    # Sweden: 10, 30, 50 -> 30 + 0.9 * (50 - 30) = 48; Germany: 100, 200 -> 195
    assert run("p95_ice_by_country") == [
        ("Germany", 2, pytest.approx(195.0)),
        ("Sweden", 3, pytest.approx(48.0)),
    ]
    assert run("freezing_decoders") == [("ExternalDecoder", 1, 5.0, 4.0), ("libvpx", 2, 1.0, 0.75)]
