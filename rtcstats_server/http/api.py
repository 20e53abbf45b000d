"""The HTTP API for backends and operators: sessions, dumps, health, metrics.

Every error is JSON ``{error, detail}`` with a status a script can branch on.
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import MultiDict
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rtcstats_server.analysis.compact import compact_summary
from rtcstats_server.analysis.findings import SEVERITIES
from rtcstats_server.config import Config
from rtcstats_server.dumps.codecs import CHUNK, Decompressor
from rtcstats_server.exceptions import (
    DumpFormatError,
    NotFound,
    ProtocolViolation,
    StoreUnavailable,
)
from rtcstats_server.forwarders import payload
from rtcstats_server.forwarders.selection import CLIENT_DIALECTS
from rtcstats_server.http.errors import client_gone, client_went_away, error, json_response
from rtcstats_server.http.keys import (
    CONFIG,
    DUMPS,
    FORWARDING,
    MANAGER,
    METRICS,
    RECORDS,
    SPOOL,
)
from rtcstats_server.http.workers import WORKER, merged_exposition
from rtcstats_server.metadata.jobs import JobState
from rtcstats_server.metadata.record import (
    EQUALITY_FILTERS,
    SessionQuery,
    SessionState,
    decode_cursor,
    encode_cursor,
    to_json_ready,
)
from rtcstats_server.query_values import parse_limit, parse_time
from rtcstats_server.storage.base import UploadBacklog
from rtcstats_server.version import installed_version

SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_LIMIT = 1000


def parse_query(params: Any) -> SessionQuery:
    known = {*EQUALITY_FILTERS, "since", "until", "limit", "cursor"}
    known |= set(FORWARD_FILTERS)
    known |= set(QUALITY_FILTERS)
    known |= set(CLIENT_FILTERS)
    unknown = sorted(set(params) - known)
    if unknown:
        raise ProtocolViolation("bad_filter", f"unknown parameter(s): {', '.join(unknown)}")
    equals = {name: params[name] for name in EQUALITY_FILTERS if name in params}
    if "state" in equals and equals["state"] not in {s.value for s in SessionState}:
        raise ProtocolViolation("bad_filter", "state must be one of: " + ", ".join(SessionState))
    return SessionQuery(
        equals=equals,
        since=parse_time("since", params["since"]) if "since" in params else None,
        until=parse_time("until", params["until"]) if "until" in params else None,
        limit=parse_limit(params.get("limit"), MAX_LIMIT, "bad_filter"),
        cursor=decode_cursor(params["cursor"]) if "cursor" in params else None,
        **_forward_filters(params),
        **_quality_filters(params),
        fields={name: params[name] for name in CLIENT_FILTERS if name in params},
    )


#: Equality on the client the summary names (``browser``: Chrome, Firefox, Safari, ...;
#: ``os``), as the sessions page searches them.
CLIENT_FILTERS = ("browser", "os")


#: Filters on the quality summary (analysis/findings.py names the findings).
QUALITY_FILTERS = ("finding", "min_loss_pct")


def _quality_filters(params: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "finding" in params:
        if params["finding"] not in SEVERITIES:
            raise ProtocolViolation(
                "bad_filter", "finding must be one of: " + ", ".join(sorted(SEVERITIES))
            )
        out["finding"] = params["finding"]
    if "min_loss_pct" in params:
        try:
            value = float(params["min_loss_pct"])
        except ValueError:
            value = math.nan
        if not 0 <= value <= 100:
            raise ProtocolViolation("bad_filter", "min_loss_pct must be a number from 0 to 100")
        out["min_loss_pct"] = value
    return out


#: Filters on the rtcstats.com upload of a session.
FORWARD_FILTERS = ("forward_state", "has_embed_url")


def _forward_filters(params: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "forward_state" in params:
        if params["forward_state"] not in {s.value for s in JobState}:
            raise ProtocolViolation(
                "bad_filter", "forward_state must be one of: " + ", ".join(JobState)
            )
        out["forward_state"] = params["forward_state"]
    if "has_embed_url" in params:
        flag = params["has_embed_url"].lower()
        if flag not in ("true", "false", "1", "0"):
            raise ProtocolViolation("bad_filter", "has_embed_url must be true or false")
        out["has_embed_url"] = flag in ("true", "1")
    return out


#: ``GET /v1/sessions?fields=``: list items with the compact quality summary (default)
#: or the whole one, as ``GET /v1/sessions/{id}`` always gives it.
LIST_FIELDS = ("compact", "full")


async def list_sessions(request: web.Request) -> web.Response:
    fields = request.query.get("fields", "compact")
    if fields not in LIST_FIELDS:
        raise ProtocolViolation("bad_filter", "fields must be compact or full")
    query = parse_query(MultiDict((k, v) for k, v in request.query.items() if k != "fields"))
    records = await request.app[RECORDS].query(query)
    next_cursor = None
    if len(records) == query.limit:
        last = records[-1]
        next_cursor = encode_cursor(last["started_at"], last["id"])
    items = [to_json_ready(r) for r in records]
    if fields == "compact":
        for item in items:
            if isinstance(item.get("quality"), dict):
                item["quality"] = compact_summary(item["quality"])
            # up to 256 KiB each: GET /v1/sessions/{id}/features and /v1/features.jsonl
            item.pop("features", None)
    return json_response({"sessions": items, "next_cursor": next_cursor})


async def record_of(request: web.Request) -> dict[str, Any]:
    session_id = request.match_info["id"]
    if not SESSION_ID.match(session_id):
        raise NotFound(f"no session {session_id!r}")
    record = await request.app[RECORDS].get(session_id)
    if record is None:
        raise NotFound(f"no session {session_id}")
    return record


async def get_session(request: web.Request) -> web.Response:
    return json_response(to_json_ready(await record_of(request)))


#: ``?format=`` of a dump download → (Content-Type, file name suffix).
DUMP_FORMATS: dict[str, tuple[str, str]] = {
    "jsonl": ("application/x-ndjson", ".jsonl"),
    "zstd": ("application/zstd", ".zst"),
    "rtcstats": ("application/x-ndjson", ".jsonl"),
}


def downloads_dir(config: Config) -> Path:
    """Where ``?format=rtcstats`` stages its conversions (emptied at start)."""
    return config.server.data_dir / "downloads"


async def downloads_ctx(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: an empty ``downloads_dir`` (a crash may leave files)."""
    folder = downloads_dir(app[CONFIG])

    def prepare() -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)

    await asyncio.to_thread(prepare)
    yield


async def get_dump(request: web.Request) -> web.StreamResponse:
    record = await record_of(request)
    key = record.get("dump_key")
    fmt = request.query.get("format", "jsonl")
    if fmt not in DUMP_FORMATS:
        raise ProtocolViolation("bad_filter", "format must be jsonl, zstd or rtcstats")
    if not key:
        return await _live_dump(request, record, fmt)
    if fmt == "rtcstats":
        return await _rtcstats_dump(request, record)
    return await _send_dump(request, record, fmt, request.app[DUMPS].read(key))


async def _live_dump(request: web.Request, record: dict[str, Any], fmt: str) -> web.StreamResponse:
    """A cluster's session still live: its segments merged as they stand (one dump per
    session whichever collector answers); elsewhere, or before any event: 404."""
    cluster = request.app[MANAGER].cluster
    if cluster is None or fmt == "rtcstats":
        raise NotFound(f"session {record['id']} has no stored dump (yet)")
    out = downloads_dir(request.app[CONFIG]) / f"{uuid.uuid4().hex}.live.zst"
    try:
        if not await cluster.merge_live(record["id"], out):
            raise NotFound(f"session {record['id']} has no dump yet")
        return await _send_dump(request, record, fmt, _file_chunks(out))
    finally:
        await asyncio.to_thread(out.unlink, missing_ok=True)


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with await asyncio.to_thread(path.open, "rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            yield chunk


async def _send_dump(
    request: web.Request, record: dict[str, Any], fmt: str, chunks: AsyncIterator[bytes]
) -> web.StreamResponse:
    raw = fmt == "zstd"
    first = await anext(chunks, None)  # NotFound surfaces before the headers go out
    response = _download(record, fmt)
    await response.prepare(request)
    decoder = None if raw else Decompressor("zstd")
    chunk = first
    try:
        while chunk is not None:
            if decoder is None:
                await response.write(chunk)
            else:
                await response.write(await asyncio.to_thread(decoder.feed, chunk))
            chunk = await anext(chunks, None)
        await response.write_eof()
    except ConnectionError as exc:
        if not client_gone(request, exc):
            raise
        # A cancelled download: no traceback; counted, and the access log has it.
        client_went_away(request.app[METRICS], request.remote, exc)
    return response


def _download(record: dict[str, Any], fmt: str) -> web.StreamResponse:
    content_type, suffix = DUMP_FORMATS[fmt]
    return web.StreamResponse(
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{record["id"]}.rtcstats{suffix}"',
        }
    )


async def _rtcstats_dump(request: web.Request, record: dict[str, Any]) -> web.StreamResponse:
    """The session as rtcstats fileFormat 3, whatever its dialect (dumps/encode.py): made
    as the forwarder makes its uploads, in a file, then sent."""
    try:
        made = await payload.prepare(
            record, request.app[DUMPS], downloads_dir(request.app[CONFIG]), "file_format_3"
        )
    except DumpFormatError as exc:
        return error(422, "conversion_failed", f"the stored dump cannot be converted: {exc}")
    try:
        response = _download(record, "rtcstats")
        response.content_length = made.size
        await response.prepare(request)
        with await asyncio.to_thread(made.path.open, "rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                await response.write(chunk)
        await response.write_eof()
    except ConnectionError as exc:
        if not client_gone(request, exc):
            raise
        client_went_away(request.app[METRICS], request.remote, exc)
    finally:
        await payload.discard(made)
    return response


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "version": installed_version()})


async def backend_problems(app: web.Application, timeout_s: float = 5.0) -> dict[str, str]:
    """What the metadata and dump stores answer to their ``ping()``, by name; empty
    when both answer. Readiness reports it; ``server.require_backends`` refuses to start."""
    problems: dict[str, str] = {}
    for name, backend in (("metadata", app[RECORDS]), ("storage", app[DUMPS])):
        try:
            await asyncio.wait_for(backend.ping(), timeout=timeout_s)
        except TimeoutError:
            problems[name] = f"no answer within {timeout_s:g} s"
        except (StoreUnavailable, OSError) as exc:
            problems[name] = str(exc) or type(exc).__name__
    return problems


async def readyz(request: web.Request) -> web.Response:
    problems = await backend_problems(request.app)
    spool = request.app[SPOOL]
    extra: dict[str, Any] = {
        "spool": {"used_bytes": spool.used_bytes, "max_bytes": spool.max_bytes}
    }
    if spool.free_bytes is not None:
        extra["spool"]["disk_free_bytes"] = spool.free_bytes
    refusal = spool.refusal()
    if refusal is not None:
        reason, detail = refusal
        problems["disk" if reason == "disk_full" else "spool"] = detail
    dumps = request.app[DUMPS]
    if isinstance(dumps, UploadBacklog):
        extra["upload_backlog"] = dumps.backlog()
    if refusal is not None or not request.app[MANAGER].accepting:
        # Only here is the collector unable to take a new session: steer clients away.
        problems.setdefault("ingest", "not accepting new sessions")
        return json_response({"status": "unavailable", "problems": problems, **extra}, 503)
    if problems:
        # A backend is down but sessions still land in the local spool/outbox and are
        # replayed later. 503 here would make every collector sharing that database or
        # bucket leave the load balancer at once: the outage would become total.
        return json_response({"status": "degraded", "problems": problems, **extra})
    return json_response({"status": "ready", **extra})


async def metrics(request: web.Request) -> web.Response:
    """This process's metrics; under ``serve --workers N``, every worker's, merged."""
    if WORKER in request.app:
        body = await merged_exposition(request.app)
    else:
        body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def forward_session(request: web.Request) -> web.Response:
    """(Re)send one session upstream now, whatever its sampling and earlier outcome."""
    record = await record_of(request)
    if FORWARDING not in request.app:
        return error(409, "forwarding_disabled", "no forwarder: set forwarders.rtcstats_com.token")
    if not record.get("dump_key"):
        return error(409, "no_dump", f"session {record['id']} has no stored dump (yet)")
    if record.get("dialect") not in CLIENT_DIALECTS:
        return error(409, "not_forwardable", f"dialect {record.get('dialect')} is not a client")
    if not await request.app[FORWARDING].enqueue(record["id"], force=True):
        return error(409, "upload_in_progress", "an upload of this session is running now")
    return json_response({"id": record["id"], "forward_state": JobState.PENDING.value}, 202)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/sessions", list_sessions)
    app.router.add_get("/v1/sessions/{id}", get_session)
    app.router.add_get("/v1/sessions/{id}/dump", get_dump)
    app.router.add_post("/v1/sessions/{id}/forward", forward_session)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
