"""The viewer's HTTP side: ``/view/{id}`` (signed, no login) and the API's fresh link.

Everything under ``/view/`` is authorised by the URL's signature alone and answers
with a CSP whose ``frame-ancestors`` lists exactly ``'self'`` and the configured
dashboards, so only they can frame it; scripts and styles run only with the
response's nonce, and nothing is loaded from elsewhere. ``POST
/v1/sessions/{id}/viewer-url`` lives under ``/v1/`` so the API's own authentication
covers it.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from rtcstats_server.exceptions import NotFound, ProtocolViolation, StoreUnavailable
from rtcstats_server.http.errors import client_gone, client_went_away
from rtcstats_server.http.keys import VIEWER
from rtcstats_server.http.viewer import render
from rtcstats_server.http.viewer.service import Viewer, iso_time
from rtcstats_server.query_values import MAX_EPOCH_MS_DIGITS, ascii_int

SESSION_ID: Final = re.compile(r"^[0-9a-f]{32}$")
_MAX_INDEX: Final = 1 << 40


def _headers(request: web.Request, nonce: str) -> dict[str, str]:
    viewer = request.app.get(VIEWER)
    ancestors = viewer.frame_ancestors if viewer is not None else "'self'"
    if viewer is not None:
        viewer.framing.observe(request.headers, request.headers.get("Host"))
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; "
        f"frame-ancestors {ancestors}"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "private, no-store",
    }


def _html(request: web.Request, status: int, text: str, nonce: str) -> web.Response:
    return web.Response(
        status=status,
        text=text,
        content_type="text/html",
        charset="utf-8",
        headers=_headers(request, nonce),
    )


def _signed(request: web.Request, nonce: str) -> tuple[Viewer, str] | web.Response:
    """The viewer and session id, or the 404/403 page to answer instead."""
    viewer = request.app.get(VIEWER)
    session_id = request.match_info["id"]
    if viewer is None or not SESSION_ID.match(session_id):
        return _html(request, 404, render.not_found_page(nonce), nonce)
    now = datetime.now(UTC).timestamp()
    reason = viewer.signer.check(
        session_id, request.query.get("exp"), request.query.get("sig"), now
    )
    if reason is not None:
        viewer.metrics.viewer_denied.labels(reason.value).inc()
        return _html(request, 403, render.denied_page(reason.value, nonce), nonce)
    return viewer, session_id


def _window(request: web.Request) -> tuple[float, float] | str | None:
    query = request.query
    if "from" not in query and "to" not in query:
        return None
    start = ascii_int(query.get("from"), MAX_EPOCH_MS_DIGITS)
    end = ascii_int(query.get("to"), MAX_EPOCH_MS_DIGITS)
    if start is None or end is None:
        return "from and to must both be epoch milliseconds"
    if end <= start:
        return "to must be after from"
    return float(start), float(end)


async def _stored_record(viewer: Viewer, session_id: str) -> dict[str, Any] | None:
    record = await viewer.records.get(session_id)
    if record is None:
        await viewer.data.forget(session_id)  # deleted (retention, API): drop its cache
    return record


async def _open_view(
    request: web.Request, nonce: str
) -> tuple[Viewer, str, tuple[float, float] | None, dict[str, Any]] | web.Response:
    """Signature, zoom window and record of a page or download request, or the error
    page to answer instead."""
    signed = _signed(request, nonce)
    if isinstance(signed, web.Response):
        return signed
    viewer, session_id = signed
    window = _window(request)
    if isinstance(window, str):
        return _html(request, 400, render.error_page(window, nonce), nonce)
    record = await _stored_record(viewer, session_id)
    if record is None:
        return _html(request, 404, render.not_found_page(nonce), nonce)
    return viewer, session_id, window, record


async def view_page(request: web.Request) -> web.StreamResponse:
    nonce = secrets.token_urlsafe(16)
    opened = await _open_view(request, nonce)
    if isinstance(opened, web.Response):
        return opened
    viewer, session_id, window, record = opened
    query = viewer.signer.request_query(request.query.get("exp"), request.query["sig"])
    response = web.StreamResponse(headers=_headers(request, nonce))
    response.content_type = "text/html"
    response.charset = "utf-8"
    await response.prepare(request)
    # The header first: it needs only the record, and shows while a cold dump is read.
    await response.write(render.page_head(record, nonce).encode())
    dump_key = record.get("dump_key")
    if not dump_key:
        state = record.get("state", "unknown")
        body = render.no_dump_body(f"No stored dump for this session yet (state: {state}).", nonce)
    else:
        try:
            if window is None:
                model = await viewer.data.model(session_id, dump_key)
            else:
                model = await viewer.data.window(dump_key, window[0], window[1])
            body = render.page_body(
                model,
                session_id,
                query,
                nonce,
                model.get("session_first"),
                record.get("upload_layout"),
            )
        except (NotFound, StoreUnavailable, OSError) as exc:
            body = render.no_dump_body(f"The dump cannot be read now: {exc}", nonce)
    try:
        await response.write(body.encode())
        await response.write_eof()
    except ConnectionError as exc:
        if not client_gone(request, exc):
            raise
        # the viewer left while its dump was read; the cache is written all the same
        client_went_away(viewer.metrics, request.remote, exc)
    return response


async def view_event(request: web.Request) -> web.StreamResponse:
    nonce = secrets.token_urlsafe(16)
    signed = _signed(request, nonce)
    if isinstance(signed, web.Response):
        return signed
    viewer, session_id = signed
    index = ascii_int(request.match_info["index"], len(str(_MAX_INDEX)))
    record = await _stored_record(viewer, session_id)
    if index is None or index > _MAX_INDEX or record is None or not record.get("dump_key"):
        return _html(request, 404, render.not_found_page(nonce), nonce)
    event = await viewer.data.event(record["dump_key"], index)
    if event is None:
        return _html(request, 404, render.not_found_page(nonce), nonce)
    body = {
        "index": index,
        "timestamp": event.timestamp,
        "method": event.method,
        "pc_id": event.pc_id,
        "value": event.value,
        "extra": list(event.extra),
    }
    return web.Response(
        body=orjson.dumps(body, default=str, option=orjson.OPT_INDENT_2),
        content_type="application/json",
        headers=_headers(request, nonce),
    )


async def view_samples(request: web.Request) -> web.StreamResponse:
    nonce = secrets.token_urlsafe(16)
    opened = await _open_view(request, nonce)
    if isinstance(opened, web.Response):
        return opened
    viewer, session_id, window, record = opened
    if not record.get("dump_key"):
        return _html(request, 404, render.not_found_page(nonce), nonce)
    headers = _headers(request, nonce)
    headers["Content-Disposition"] = f'attachment; filename="{session_id}-samples.jsonl"'
    response = web.StreamResponse(headers=headers)
    response.content_type = "application/x-ndjson"
    await response.prepare(request)
    start, end = window if window is not None else (None, None)
    try:
        await viewer.data.stream_samples(record["dump_key"], start, end, response.write)
        await response.write_eof()
    except ConnectionError as exc:
        if not client_gone(request, exc):
            raise
        client_went_away(viewer.metrics, request.remote, exc)  # stream_samples has stopped
    return response


_MAX_NAME: Final = 300


async def view_property(request: web.Request) -> web.StreamResponse:
    """One raw getStats property of one report of one connection over time, streamed
    as JSON lines ``{t, value}`` (the page charts it on demand)."""
    nonce = secrets.token_urlsafe(16)
    opened = await _open_view(request, nonce)
    if isinstance(opened, web.Response):
        return opened
    viewer, _, _, record = opened
    pc_id, report_id = request.query.get("pc"), request.query.get("report")
    name = request.query.get("property")
    if (
        not pc_id
        or not report_id
        or not name
        or max(map(len, (pc_id, report_id, name))) > _MAX_NAME
    ):
        text = f"pc, report and property are required (at most {_MAX_NAME} characters each)"
        return _html(request, 400, render.error_page(text, nonce), nonce)
    if not record.get("dump_key"):
        return _html(request, 404, render.not_found_page(nonce), nonce)
    response = web.StreamResponse(headers=_headers(request, nonce))
    response.content_type = "application/x-ndjson"
    await response.prepare(request)
    try:
        await viewer.data.stream_property(
            record["dump_key"], pc_id, report_id, name, response.write
        )
        await response.write_eof()
    except ConnectionError as exc:
        if not client_gone(request, exc):
            raise
        client_went_away(viewer.metrics, request.remote, exc)
    return response


#: The longest lifetime a caller may ask of an expiring link (ten years).
MAX_TTL_S: Final = 10 * 366 * 86400
_MAX_OPTIONS_BYTES: Final = 1024


async def _link_options(request: web.Request) -> tuple[bool, int | None]:
    """(expires, ttl_s) from the optional JSON body ``{"expires": bool, "ttl_s": int}``."""
    if not request.can_read_body:
        return True, None
    raw = b""  # a read returns what has arrived: read until the end or past the limit
    while len(raw) <= _MAX_OPTIONS_BYTES and not request.content.at_eof():
        more = await request.content.read(_MAX_OPTIONS_BYTES + 1 - len(raw))
        if not more:
            break
        raw += more
    if not raw.strip():
        return True, None
    try:
        options = orjson.loads(raw) if len(raw) <= _MAX_OPTIONS_BYTES else None
    except orjson.JSONDecodeError:
        options = None
    if not isinstance(options, dict) or set(options) - {"expires", "ttl_s"}:
        raise ProtocolViolation(
            "bad_request", 'the body, when sent, is {"expires": true|false, "ttl_s": seconds}'
        )
    expires, ttl_s = options.get("expires", True), options.get("ttl_s")
    if not isinstance(expires, bool):
        raise ProtocolViolation("bad_request", "expires must be true or false")
    if ttl_s is not None and (
        not isinstance(ttl_s, int) or isinstance(ttl_s, bool) or not 60 <= ttl_s <= MAX_TTL_S
    ):
        raise ProtocolViolation("bad_request", f"ttl_s must be an integer from 60 to {MAX_TTL_S}")
    if ttl_s is not None and not expires:
        raise ProtocolViolation("bad_request", "ttl_s applies only to an expiring link")
    return expires, ttl_s


async def viewer_url(request: web.Request) -> web.Response:
    """A signed link: expiring (``viewer.url_ttl_s``, or the body's ``ttl_s``) by
    default, lasting with ``{"expires": false}`` (e.g. to replace a stored link that
    an older version made to expire)."""
    viewer = request.app.get(VIEWER)
    session_id = request.match_info["id"]
    if viewer is None:
        detail = "the viewer is disabled (viewer.enabled: false)"
        body = {"error": "viewer_disabled", "detail": detail}
        return web.json_response(body, status=404, dumps=lambda o: orjson.dumps(o).decode())
    expires, ttl_s = await _link_options(request)
    if not SESSION_ID.match(session_id) or await viewer.records.get(session_id) is None:
        raise NotFound(f"no session {session_id}")
    signed = viewer.url_for(session_id, ttl_s) if expires else viewer.signer.lasting(session_id)
    return web.json_response(
        {"viewer_url": signed.url, "expires_at": iso_time(signed.expires_at)},
        dumps=lambda o: orjson.dumps(o).decode(),
    )


def add_routes(app: web.Application) -> None:
    """``/view/...`` on the public port; the API route with the other ``/v1/`` ones."""
    app.router.add_get("/view/{id}", view_page)
    app.router.add_get("/view/{id}/events/{index}", view_event)
    app.router.add_get("/view/{id}/samples.jsonl", view_samples)
    app.router.add_get("/view/{id}/property.jsonl", view_property)
    app.router.add_post("/v1/sessions/{id}/viewer-url", viewer_url)
