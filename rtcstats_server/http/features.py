"""The features API: one session's features, and every session's as JSON lines.

``GET /v1/sessions/{id}/features`` answers the record's ``features`` (404 until the
session is analysed). ``GET /v1/features.jsonl?since=&until=&level=`` streams one JSON
object per line and per entity (``client``: one per session; ``connection``: one per
peer connection; ``track``: one per track), each with its ``session_id`` (and its
``connection_id``, ``stats_id``), ``started_at``, ``browser`` and ``os`` beside the
features, so the file
reads straight into DuckDB (``read_json_auto``) or pandas (``read_json(lines=True)``).
Sessions come newest first, read from the store a page at a time: memory stays at one
page of records however many sessions match, and rows go out as each page is read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Final

import orjson
from aiohttp import web

from rtcstats_server.exceptions import NotFound, ProtocolViolation, StoreUnavailable
from rtcstats_server.http.api import record_of
from rtcstats_server.http.errors import client_gone, client_went_away, json_response
from rtcstats_server.http.keys import METRICS, RECORDS
from rtcstats_server.metadata.record import SessionQuery
from rtcstats_server.query_values import parse_time

log = logging.getLogger(__name__)

#: Rows per entity: ``level`` values.
LEVELS: Final = ("client", "connection", "track")
#: Records read from the store at a time (each at most 1 MiB, its features 256 KiB).
PAGE: Final = 25
_PARAMETERS: Final = frozenset({"since", "until", "level"})
#: Record fields every row carries besides its ids, to group by without a join.
ROW_RECORD_FIELDS: Final = ("browser", "os")


async def get_features(request: web.Request) -> web.Response:
    record = await record_of(request)
    features = record.get("features")
    if not isinstance(features, dict):
        raise NotFound(f"session {record['id']} has no features (not analysed yet)")
    return json_response(
        {"id": record["id"], "started_at": _iso(record.get("started_at")), "features": features}
    )


def rows(record: dict[str, Any], level: str) -> Iterator[dict[str, Any]]:
    """The rows of one record's features at one level, each naming its entity."""
    features = record.get("features")
    if not isinstance(features, dict):
        return
    head = {"session_id": record["id"], "started_at": _iso(record.get("started_at"))}
    for name in ROW_RECORD_FIELDS:
        if record.get(name) is not None:
            head[name] = record[name]
    if level == "client":
        client = features.get("client")
        if isinstance(client, dict):
            yield {**head, **client}
        return
    for connection in features.get("connections") or ():
        if not isinstance(connection, dict):
            continue
        values = {k: v for k, v in connection.items() if k not in ("id", "tracks")}
        named = {**head, "connection_id": connection.get("id")}
        if level == "connection":
            yield {**named, **values}
            continue
        for track in connection.get("tracks") or ():
            if isinstance(track, dict):
                yield {**named, **track}


async def features_jsonl(request: web.Request) -> web.StreamResponse:
    params = request.query
    unknown = sorted(set(params) - _PARAMETERS)
    if unknown:
        raise ProtocolViolation("bad_filter", f"unknown parameter(s): {', '.join(unknown)}")
    level = params.get("level", "connection")
    if level not in LEVELS:
        raise ProtocolViolation("bad_filter", "level must be client, connection or track")
    since = parse_time("since", params["since"]) if "since" in params else None
    until = parse_time("until", params["until"]) if "until" in params else None
    store = request.app[RECORDS]
    query = SessionQuery(since=since, until=until, limit=PAGE)
    page = await store.query(query)  # a store error answers 503 before the headers go out
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-ndjson",
            "Content-Disposition": f'attachment; filename="features-{level}.jsonl"',
        }
    )
    await response.prepare(request)
    try:
        while page:
            lines = [orjson.dumps(row) for record in page for row in rows(record, level)]
            if lines:
                await response.write(b"\n".join(lines) + b"\n")
            if len(page) < PAGE:
                break
            last = page[-1]
            query = SessionQuery(
                since=since, until=until, limit=PAGE, cursor=(last["started_at"], last["id"])
            )
            page = await store.query(query)
        await response.write_eof()
    except ConnectionError as exc:
        if not client_gone(request, exc):
            raise
        client_went_away(request.app[METRICS], request.remote, exc)
    except StoreUnavailable as exc:
        # The status went out already: cut the stream, so the client sees it incomplete
        # (a chunked body without its end) rather than a short but well-formed file.
        log.warning("features.jsonl cut short: the session store failed: %s", exc)
        if request.transport is not None:
            request.transport.abort()
    return response


def _iso(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/sessions/{id}/features", get_features)
    app.router.add_get("/v1/features.jsonl", features_jsonl)
