"""The rtcstats.com REST API, self-hosted: ``/v1.0/upload`` and ``/v1.0/sessions``.

A backend written against api.rtcstats.com works here by changing the base URL and
the token: same routes, same request shapes (chunked multipart then a JSON
``assemble``, or one raw body), same answers (``rtcstatsId``, ``rtcstatsUrl``,
``embedUrl``; lists as ``{total, data}``) and the same error bodies
``{error, errorCode}``. What the ids and URLs point at is ours: session ids of this
collector and signed links to its own viewer.

Where that API knows things we do not compute (experience scores, its catalogue of
observations) we answer with what we have: our findings stand for its observations,
their severities mapped (error → critical, warning → high, info → low), and scores
are ``null`` / ``unrated``. Extensions are additive: cursor pagination
(``limit``, ``cursor`` → ``nextCursor``), ``since``/``until``, ``data.session`` (our
whole record) in a session's detail.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import re
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final

import orjson
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from rtcstats_server.analysis.findings import ERROR, INFO, SEVERITIES, WARNING
from rtcstats_server.exceptions import NotFound, ProtocolViolation, UploadRefused
from rtcstats_server.http.errors import json_response
from rtcstats_server.http.keys import CONFIG, DUMPS, MANAGER, METRICS, RECORDS, UPLOADS, VIEWER
from rtcstats_server.http.relay import relay_request
from rtcstats_server.http.viewer.signing import public_base_url
from rtcstats_server.http.workers import WORKER
from rtcstats_server.metadata.record import (
    SessionQuery,
    decode_cursor,
    encode_cursor,
    to_json_ready,
)
from rtcstats_server.query_values import parse_limit, parse_time
from rtcstats_server.uploads.chunks import CHUNK_COST, UPLOAD_COST
from rtcstats_server.uploads.service import Uploads

#: Our severities as that API names them.
SEVERITY_NAMES: Final = {ERROR: "critical", WARNING: "high", INFO: "low"}
#: Tags of our findings, in that API's tag vocabulary (``observationTags``).
FINDING_TAGS: Final[dict[str, tuple[str, ...]]] = {
    "ice_failed": ("connectivity",),
    "connection_failed": ("connectivity",),
    "gum_denied": ("peripheral", "behavior"),
    "gum_failed": ("peripheral",),
    "display_media_failed": ("peripheral",),
    "sdp_error": ("configuration",),
    "ice_candidate_error": ("connectivity", "configuration"),
    "connection_dropped": ("connectivity", "network"),
    "slow_connect": ("connectivity",),
    "high_packet_loss": ("network",),
    "high_rtt": ("network",),
    "high_jitter": ("network",),
    "video_freezes": ("video", "inbound"),
    "high_audio_concealment": ("audio", "inbound"),
    "dump_damaged": ("bug",),
}
#: ``hasCritical`` and friends: the findings of that severity.
SEVERITY_FILTERS: Final = {"hasCritical": "critical", "hasHigh": "high", "hasMedium": "medium"}
#: Query parameters that equal a record field.
FIELD_FILTERS: Final = {
    "userId": ("equals", "user_id"),
    "conferenceId": ("equals", "conference_id"),
    "sessionId": ("fields", "meeting_id"),
    "browser": ("fields", "browser"),
    "os": ("fields", "os"),
}
LIST_PARAMETERS: Final = frozenset(
    {
        *FIELD_FILTERS,
        *SEVERITY_FILTERS,
        "observationTypes",
        "observationTags",
        "limit",
        "cursor",
        "since",
        "until",
    }
)
_ID: Final = re.compile(r"^[0-9a-f]{32}$")
_MAX_LIMIT: Final = 1000
_MAX_FIELD_BYTES: Final = 1024
#: A JSON body at most this long that has the assemble shape is an assemble call;
#: anything else sent as JSON is a dump (a webrtc-internals export is JSON).
_ASSEMBLE_MAX: Final = 1024
#: Under ``serve --workers N``, the worker that takes every ``/v1.0/upload`` (the others
#: relay theirs to it): a file's chunks may arrive over different connections.
UPLOADS_WORKER: Final = 0
_WRITE_BYTES: Final = 1 << 20
_MAX_CHUNKS: Final = 100_000


@functools.cache
def processor_version() -> str:
    try:
        return "rtcstats-collector/" + importlib.metadata.version("rtcstats-collector")
    except importlib.metadata.PackageNotFoundError:
        return "rtcstats-collector"


# -- URLs ---------------------------------------------------------------------------------


def session_urls(app: web.Application, session_id: str) -> dict[str, str]:
    """``rtcstatsUrl`` and ``embedUrl`` of a session: its signed viewer link, lasting
    like the record's ``viewer_url`` (a backend stores it).

    With the viewer disabled there is nothing to embed: like a plan without
    embedding, the answer has no ``embedUrl``, and ``rtcstatsUrl`` is the session in
    this API.
    """
    viewer = app.get(VIEWER)
    if viewer is None:
        base = public_base_url(app[CONFIG])
        return {"rtcstatsUrl": f"{base}/v1.0/sessions/{session_id}"}
    url = viewer.stored_link(session_id).url
    return {"rtcstatsUrl": url, "embedUrl": url}


# -- upload ---------------------------------------------------------------------------------


def _owner(request: web.Request) -> str:
    """Whose chunks these are: the credentials that sent them (as text that encodes:
    bytes that are not UTF-8 arrive as lone surrogates)."""
    header = request.headers.get("Authorization", "")
    return header.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class _Sink:
    """Received bytes into a file, off the loop, counted against the limits: ``cost``
    from the start (what holding it costs besides its bytes), then its bytes."""

    def __init__(self, uploads: Uploads, path: Path, limit: int, what: str, cost: int) -> None:
        self.uploads = uploads
        self.path = path
        self.limit = limit
        self.what = what
        self.size = 0
        uploads.chunks.reserve(cost)
        self.reserved = cost
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.handle: IO[bytes] | None = None

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.size > self.limit:
            raise UploadRefused(413, "too_large", f"{self.what} is larger than {self.limit} bytes")
        self.uploads.chunks.reserve(len(data))
        self.reserved += len(data)
        self.buffer.append(data)
        self.buffered += len(data)
        if self.buffered >= _WRITE_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if not self.buffer:
            return
        data = b"".join(self.buffer)
        self.buffer.clear()
        self.buffered = 0
        if self.handle is None:
            self.handle = await asyncio.to_thread(self.path.open, "wb")
        await asyncio.to_thread(self.handle.write, data)

    async def close(self) -> None:
        await self.flush()
        if self.handle is None:
            self.handle = await asyncio.to_thread(self.path.open, "wb")
        await asyncio.to_thread(self.handle.close)

    async def discard(self) -> None:
        if self.handle is not None:
            await asyncio.to_thread(self.handle.close)
        await asyncio.to_thread(self.path.unlink, missing_ok=True)
        self.release()

    def release(self) -> None:
        self.uploads.chunks.release(self.reserved)
        self.reserved = 0


async def upload(request: web.Request) -> web.StreamResponse:
    worker = request.app.get(WORKER)
    if worker is not None and worker.index != UPLOADS_WORKER:
        # A file's chunks and its assembly must meet in one process (chunks.py)
        return await relay_request(request, worker, UPLOADS_WORKER)
    uploads = request.app[UPLOADS]
    limit = request.app[CONFIG].uploads.max_bytes
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        # Multipart framing adds a little to a chunk: only clear excess is refused early.
        raise UploadRefused(413, "too_large", f"the upload is larger than {limit} bytes")
    if request.content_type == "multipart/form-data":
        return await _chunk(request, uploads)
    head = b""
    if request.content_type == "application/json":
        head = await _head(request)
        if len(head) <= _ASSEMBLE_MAX and request.content.at_eof():
            call = _assemble_call(head)
            if call is not None:
                return await _assemble(request, uploads, *call)
    return await _raw(request, uploads, head)


async def _head(request: web.Request) -> bytes:
    head = b""
    while len(head) <= _ASSEMBLE_MAX and not request.content.at_eof():
        head += await request.content.read(_ASSEMBLE_MAX + 1 - len(head))
    return head


def _assemble_call(body: bytes) -> tuple[str, str | None] | None:
    """(fileId, fileName) of an assemble call, None when the body is not one."""
    try:
        call = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(call, dict) or "assemble" not in call or "fileId" not in call:
        return None
    file_id, name = call.get("fileId"), call.get("fileName")
    if call.get("assemble") is not True:
        raise UploadRefused(400, "bad_request", "assemble must be true")
    if not isinstance(file_id, str) or not 0 < len(file_id) <= 256:
        raise UploadRefused(400, "bad_request", "fileId must be a string of 1 to 256 characters")
    if name is not None and (not isinstance(name, str) or len(name) > 1024):
        raise UploadRefused(400, "bad_request", "fileName must be a string")
    return file_id, name


async def _assemble(
    request: web.Request, uploads: Uploads, file_id: str, file_name: str | None
) -> web.Response:
    session_id = await uploads.assemble(_owner(request), file_id, file_name)
    return _stored(request, session_id)


async def _raw(request: web.Request, uploads: Uploads, head: bytes) -> web.Response:
    limit = request.app[CONFIG].uploads.max_bytes
    sink = _Sink(uploads, uploads.chunks.scratch(), limit, "the upload", UPLOAD_COST)
    try:
        await sink.write(head)
        async for data in request.content.iter_chunked(256 * 1024):
            await sink.write(data)
        await sink.close()
    except HttpProcessingError as exc:  # e.g. a Content-Encoding that does not decode
        await sink.discard()
        raise UploadRefused(400, "bad_request", f"unreadable body: {exc.message}") from None
    except BaseException:
        await sink.discard()
        raise
    try:  # counted until stored: waiting for an upload slot holds its bytes on disk
        if sink.size == 0:
            raise UploadRefused(400, "bad_request", "the body is empty: send a dump")
        name = request.query.get("fileName")
        session_id = await uploads.store([sink.path], name[:1024] if name else None, sink.size)
    finally:
        await sink.discard()
    return _stored(request, session_id)


def _stored(request: web.Request, session_id: str) -> web.Response:
    return json_response(
        {"success": True, "rtcstatsId": session_id, **session_urls(request.app, session_id)}
    )


async def _field(part: BodyPartReader) -> str:
    data = b""
    while chunk := await part.read_chunk(_MAX_FIELD_BYTES + 1):
        data += chunk
        if len(data) > _MAX_FIELD_BYTES:
            raise UploadRefused(400, "bad_request", f"field {part.name} is too long")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise UploadRefused(400, "bad_request", f"field {part.name} is not UTF-8") from None


async def _chunk(request: web.Request, uploads: Uploads) -> web.Response:
    """One chunk: a multipart body of at most ``max_fields`` parts, whose text fields
    hold at most ``max_fields_bytes`` together (413 ``too_many_fields`` /
    ``fields_too_large``), so what a request makes us hold is bounded by its parts
    before it is by its size."""
    config = request.app[CONFIG].uploads
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError):
        raise UploadRefused(400, "bad_request", "not a multipart/form-data body") from None
    fields: dict[str, str] = {}
    field_bytes = 0
    parts = 0
    sink: _Sink | None = None
    try:
        while True:
            part = await reader.next()
            if part is None:
                break
            parts += 1
            if parts > config.max_fields:
                raise UploadRefused(
                    413, "too_many_fields", f"more than {config.max_fields} multipart parts"
                )
            if isinstance(part, MultipartReader):
                raise UploadRefused(400, "bad_request", "nested multipart bodies are not read")
            if part.name == "chunk":
                if sink is not None:
                    raise UploadRefused(400, "bad_request", "one chunk per request")
                sink = _Sink(
                    uploads, uploads.chunks.scratch(), config.max_chunk_bytes, "a chunk", CHUNK_COST
                )
                while data := await part.read_chunk(256 * 1024):
                    await sink.write(data)
                await sink.close()
            else:
                value = await _field(part)
                field_bytes += len(part.name or "") + len(value)
                if field_bytes > config.max_fields_bytes:
                    raise UploadRefused(
                        413,
                        "fields_too_large",
                        f"the multipart fields are larger than {config.max_fields_bytes} bytes",
                    )
                if part.name is not None:
                    fields[part.name] = value
        if sink is None:
            raise UploadRefused(400, "bad_request", "missing field chunk (the file part)")
        file_id, index, total, name = _chunk_fields(fields)
        await uploads.chunks.add(_owner(request), file_id, index, total, name, sink.path)
    except (HttpProcessingError, ValueError) as exc:  # the multipart framing is broken
        if sink is not None:
            await sink.discard()
        raise UploadRefused(400, "bad_request", f"unreadable multipart body: {exc}") from None
    except BaseException:
        if sink is not None:
            await sink.discard()
        raise
    return json_response({"success": True})


def _chunk_fields(fields: dict[str, str]) -> tuple[str, int, int | None, str | None]:
    file_id = fields.get("fileId", "")
    if not 0 < len(file_id) <= 256:
        raise UploadRefused(400, "bad_request", "missing field fileId (1 to 256 characters)")
    try:
        index = int(fields.get("chunkIndex", ""))
        total = int(fields["totalChunks"]) if "totalChunks" in fields else None
    except ValueError:
        raise UploadRefused(400, "bad_request", "chunkIndex and totalChunks are integers") from None
    if not 0 <= index < (total if total is not None else _MAX_CHUNKS):
        raise UploadRefused(400, "bad_request", "chunkIndex out of range")
    if total is not None and not 0 < total <= _MAX_CHUNKS:
        raise UploadRefused(400, "bad_request", f"totalChunks must be 1 to {_MAX_CHUNKS}")
    return file_id, index, total, fields.get("fileName")


# -- sessions -------------------------------------------------------------------------------


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false", "1", "0"):
        raise ProtocolViolation("bad_request", f"{name} must be true or false")
    return lowered in ("true", "1")


def _values(params: Any, name: str) -> list[str]:
    """A filter given repeated or comma-separated (both forms are accepted)."""
    out: list[str] = []
    for value in params.getall(name, []):
        out += [v.strip() for v in value.split(",") if v.strip()]
    return out


def _findings_named(names: Iterable[str]) -> set[str]:
    return {name for name in names if name in SEVERITIES}


def list_query(params: Any) -> SessionQuery | None:
    """The store query for that API's filters; None when no session can match."""
    unknown = sorted(set(params) - LIST_PARAMETERS)
    if unknown:
        raise ProtocolViolation("bad_request", f"unsupported parameter(s): {', '.join(unknown)}")
    equals: dict[str, str] = {}
    fields: dict[str, str] = {}
    for name, (kind, column) in FIELD_FILTERS.items():
        if name in params:
            (equals if kind == "equals" else fields)[column] = params[name]
    wanted: set[str] | None = None  # findings of which at least one must be present

    def narrow(names: set[str]) -> None:
        nonlocal wanted
        wanted = names if wanted is None else wanted & names

    for name, severity in SEVERITY_FILTERS.items():
        if name in params and _flag(name, params[name]):
            narrow({f for f, s in SEVERITIES.items() if SEVERITY_NAMES[s] == severity})
    types = _values(params, "observationTypes")
    if types:
        narrow(_findings_named(types))
    tags = _values(params, "observationTags")
    if tags:
        narrow({f for f, t in FINDING_TAGS.items() if set(t) & set(tags)})
    if wanted is not None and not wanted:
        return None
    return SessionQuery(
        equals=equals,
        fields=fields,
        findings_any=tuple(sorted(wanted or ())),
        since=parse_time("since", params["since"]) if "since" in params else None,
        until=parse_time("until", params["until"]) if "until" in params else None,
        limit=parse_limit(params.get("limit"), _MAX_LIMIT, "bad_request"),
        cursor=decode_cursor(params["cursor"]) if "cursor" in params else None,
    )


def _iso(value: object) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _title(record: dict[str, Any]) -> str:
    name = record.get("upload_file_name")
    if isinstance(name, str) and name:
        return name.rsplit("/", 1)[-1].split(".", 1)[0] or name
    for key in ("conference_id", "url", "client_session_id"):
        value = record.get(key)
        if isinstance(value, str) and value:
            return value
    return str(record["id"])


def _observations(record: dict[str, Any]) -> list[dict[str, Any]]:
    quality = record.get("quality")
    found = quality.get("findings") if isinstance(quality, dict) else None
    out: list[dict[str, Any]] = []
    for finding in found if isinstance(found, list) else []:
        if not isinstance(finding, dict) or finding.get("name") not in SEVERITIES:
            continue
        name = finding["name"]
        item: dict[str, Any] = {
            "type": name,
            "severity": SEVERITY_NAMES[SEVERITIES[name]],
            "tags": list(FINDING_TAGS.get(name, ())),
            "category": "connections" if finding.get("pc_id") else "devices",
            "detail": str(finding.get("detail") or ""),
        }
        if finding.get("pc_id"):
            item["source"] = {"pid": str(finding["pc_id"])}
        out.append(item)
    return out


def _client(record: dict[str, Any]) -> dict[str, Any]:
    quality = record.get("quality")
    client = quality.get("client") if isinstance(quality, dict) else None
    return client if isinstance(client, dict) else {}


def _major(version: object) -> str | None:
    return version.split(".", 1)[0] if isinstance(version, str) and version else None


def abstract(record: dict[str, Any]) -> dict[str, Any]:
    observations = _observations(record)
    counts = {level: 0 for level in ("critical", "high", "medium")}
    types: list[str] = []
    tags: list[str] = []
    for item in observations:
        if item["severity"] in counts:
            counts[item["severity"]] += 1
            types += [item["type"]] if item["type"] not in types else []
            tags += [t for t in item["tags"] if t not in tags]
    client = _client(record)
    return {
        "observationTypes": types,
        "observationTags": tags,
        "browser": record.get("browser") or client.get("browser"),
        "browserVersion": _major(client.get("browser_version")),
        "os": record.get("os") or client.get("os"),
        "osVersion": client.get("os_version"),
        "conferenceId": record.get("conference_id"),
        "sessionId": record.get("meeting_id"),
        "userId": record.get("user_id"),
        "experienceScore": None,
        "connectivity": None,
        "observationsCritical": counts["critical"],
        "observationsHigh": counts["high"],
        "observationsMedium": counts["medium"],
        "scoreBand": "unrated",
    }


def list_item(app: web.Application, record: dict[str, Any]) -> dict[str, Any]:
    session_id = str(record["id"])
    created = record.get("uploaded_at") or record.get("started_at")
    return {
        "rtcstatsId": session_id,
        "createdAt": _iso(created),
        "sessionStart": _iso(record.get("started_at")),
        "sessionEnd": _iso(record.get("ended_at")),
        "title": _title(record),
        **session_urls(app, session_id),
        "abstract": abstract(record),
    }


async def list_sessions(request: web.Request) -> web.Response:
    query = list_query(request.query)
    records = [] if query is None else await request.app[RECORDS].query(query)
    next_cursor = None
    if query is not None and len(records) == query.limit:
        last = records[-1]
        next_cursor = encode_cursor(last["started_at"], last["id"])
    items = [list_item(request.app, record) for record in records]
    return json_response({"total": len(items), "data": items, "nextCursor": next_cursor})


async def _session(request: web.Request) -> dict[str, Any]:
    raw = request.match_info["id"]
    session_id = raw.replace("-", "").lower()  # a UUID with dashes names the same id
    if not _ID.match(session_id):
        raise UploadRefused(400, "bad_request", "invalid session id")
    record = await request.app[RECORDS].get(session_id)
    if record is None:
        raise NotFound(f"no session {session_id}")
    return record


def detail(app: web.Application, record: dict[str, Any]) -> dict[str, Any]:
    session_id = str(record["id"])
    quality = record.get("quality") if isinstance(record.get("quality"), dict) else {}
    pcs = quality.get("peer_connections") if isinstance(quality, dict) else None
    listed = pcs if isinstance(pcs, list) else []
    connections = {str(pc.get("pc_id")): pc for pc in listed if isinstance(pc, dict)}
    started, ended = record.get("started_at"), record.get("ended_at")
    duration = (
        round((ended - started).total_seconds() * 1000)
        if isinstance(started, datetime) and isinstance(ended, datetime)
        else None
    )
    client = _client(record)
    data = {
        "id": session_id,
        "title": _title(record),
        "callStart": _iso(started),
        "callEnd": _iso(ended),
        "durationMs": duration,
        "created_at": _iso(record.get("uploaded_at") or started),
        "uploadTimestamp": _iso(record.get("uploaded_at")),
        "fileName": record.get("upload_file_name"),
        "fileSize": record.get("upload_bytes") or record.get("dump_raw_bytes"),
        "pConnectionsNumber": len(connections),
        "pConnections": connections,
        "userAgentData": {
            "browser": client.get("browser"),
            "browserVersion": client.get("browser_version"),
            "os": client.get("os"),
            "osVersion": client.get("os_version"),
            "userAgent": record.get("user_agent") or client.get("user_agent"),
        },
        "metadata": {
            "clientProtocol": record.get("client_protocol") or record.get("dialect"),
            "source": record.get("source") or "ingest",
            "conferenceId": record.get("conference_id"),
            "userId": record.get("user_id"),
            "sessionId": record.get("meeting_id"),
            "app": record.get("app"),
        },
        "observations": _observations(record),
        "abstract": abstract(record),
        "experienceScore": None,
        "session": to_json_ready(record),
    }
    return {
        "data": data,
        "rtcstatsId": session_id,
        **session_urls(app, session_id),
        "processorVersion": processor_version(),
    }


async def get_session(request: web.Request) -> web.Response:
    return json_response(detail(request.app, await _session(request)))


async def delete_session(request: web.Request) -> web.Response:
    """Record and dump go; the dump first, so a failure leaves a record to retry with."""
    record = await _session(request)
    key = record.get("dump_key")
    if key:
        try:
            await request.app[DUMPS].delete(key)
        except NotFound:
            pass
    await request.app[RECORDS].delete(str(record["id"]))
    return json_response({"success": True})


# -- wiring ------------------------------------------------------------------------------------


async def uploads_ctx(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: the upload service once the session manager exists."""
    config = app[CONFIG]
    if not config.uploads.enabled:
        yield
        return
    manager = app[MANAGER]
    service = Uploads(config, manager.finisher, manager.node_id, app[METRICS])
    await service.open()
    app[UPLOADS] = service
    yield
    await service.close()


def add_routes(app: web.Application) -> None:
    if not app[CONFIG].uploads.enabled:
        return
    app.router.add_post("/v1.0/upload", upload)
    app.router.add_get("/v1.0/sessions", list_sessions)
    app.router.add_get("/v1.0/sessions/{id}", get_session)
    app.router.add_delete("/v1.0/sessions/{id}", delete_session)
