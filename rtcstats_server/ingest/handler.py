"""The websocket handler: a short loop that feeds a dialect decoder and a session.

Everything about the wire format lives in the decoders; everything about a
session's life lives in ``sessions``. This module only checks the upgrade request,
moves messages between the two, and turns hostile input into its defined answer.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import WSMsgType, web
from aiohttp.http_websocket import WebSocketError

from rtcstats_server.analysis.geo import GeoLocator
from rtcstats_server.analysis.geo_annotation import (
    CANDIDATE_PREFIXES,
    annotate_candidate,
    annotation,
)
from rtcstats_server.config import Config
from rtcstats_server.dialects import Decoder, choose_subprotocol, metric_label, open_decoder
from rtcstats_server.dialects.base import DumpLine, EndOfSession, Handshake, Identity, Reply
from rtcstats_server.dumps.privacy import mask_line, mask_remote
from rtcstats_server.exceptions import HandshakeRefused, ProtocolViolation
from rtcstats_server.ingest.access import TOKEN_PARAM, ClientAccess
from rtcstats_server.ingest.closing import close_reason
from rtcstats_server.ingest.limits import ConnectionLimits
from rtcstats_server.metadata.record import EndReason
from rtcstats_server.metrics import Metrics
from rtcstats_server.sessions.live import Session, SessionManager
from rtcstats_server.storage.spool import Spool

log = logging.getLogger(__name__)

#: Request paths we store as the session's url: printable, no traversal, bounded.
PATH_PATTERN = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")

#: aiohttp's own protocol-error close codes → why the session ended.
_ERROR_REASONS = {1009: EndReason.MESSAGE_TOO_BIG, 1007: EndReason.BAD_MESSAGES}


def without_token(raw_path: str) -> str:
    """``raw_path`` without the token parameter: it is a credential, and the path is
    stored as the session's url.

    Judged by the decoded name, as the query parser that hands us the token decodes it:
    ``rtcstats%2Dtoken``, ``%72tcstats-token`` and ``rtcstats%2dtoken`` are the token
    too. Any case of the name is cut as well: no other parameter is called that.
    """
    path, question, query = raw_path.partition("?")
    if not question:
        return raw_path
    parts = query.split("&")
    kept = [p for p in parts if unquote_plus(p.partition("=")[0]).casefold() != TOKEN_PARAM]
    if len(kept) == len(parts):
        return raw_path
    return f"{path}?{'&'.join(kept)}" if any(kept) else path


def read_handshake(
    request: web.Request,
    config: Config,
    remote: str | None = None,
    location: dict[str, Any] | None = None,
) -> Handshake:
    """``remote``: the client address to record (already masked when privacy asks);
    ``location``: where that address is (looked up before masking)."""
    raw = without_token(request.raw_path)
    if len(raw) > config.ingest.max_path_bytes:
        raise HandshakeRefused(400, "bad_path", "request path is too long")
    path_part = raw.split("?", 1)[0]
    if not PATH_PATTERN.match(path_part) or "/../" in f"{path_part}/" or "\\" in path_part:
        raise HandshakeRefused(400, "bad_path", "request path has characters we do not accept")
    subprotocol = choose_subprotocol(request.headers.get("Sec-WebSocket-Protocol", ""))
    query = {key: request.query.getone(key) for key in request.query}
    return Handshake(
        path=raw,
        query=query,
        subprotocol=subprotocol,
        user_agent=header_text(request, "User-Agent", 512),
        origin=header_text(request, "Origin", 256),
        remote=(request.remote or "") if remote is None else remote,
        location=location,
    )


def header_text(request: web.Request, name: str, limit: int) -> str:
    """A header as text we can store: aiohttp hands over bytes that are not UTF-8 as
    lone surrogates, which no JSON encoder writes (the dump's metadata line, the record)."""
    value = request.headers.get(name, "")
    if not value.isascii():
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value[:limit]


def echo_close_code(code: int) -> int:
    """The code to answer a client's close frame with (1000 when it sent none)."""
    return code if 1000 <= code <= 4999 and code not in (1005, 1006, 1015) else 1000


class IngestHandler:
    def __init__(
        self,
        config: Config,
        manager: SessionManager,
        metrics: Metrics,
        spool: Spool | None = None,
        access: ClientAccess | None = None,
        locator: GeoLocator | None = None,
    ) -> None:
        self.config = config
        #: Looks up the client's address and its candidates' before they are masked.
        self.locator = locator
        self.manager = manager
        self.metrics = metrics
        self.spool = spool
        self.access = access or ClientAccess(config.auth)
        self.limits = ConnectionLimits(config.limits)
        self.mask = config.privacy.obfuscate_ip_addresses

    def _located(self, client_ip: str) -> dict[str, Any] | None:
        found = self.locator.lookup(client_ip) if self.locator and client_ip else None
        return annotation(found) if found is not None else None

    def _masked(self, line: DumpLine, relative_time: bool) -> DumpLine:
        """The line with its addresses masked; a candidate's location written in first
        (geo_annotation.py: the analysis cannot look up a masked address)."""
        text = line.text
        if self.locator is not None and text.startswith(CANDIDATE_PREFIXES):
            text = annotate_candidate(text, self.locator, relative_time) or text
        masked = mask_line(text)
        if masked is not None:
            return DumpLine(masked, line.seq)
        return line if text is line.text else DumpLine(text, line.seq)

    def refuse(self, refusal: HandshakeRefused) -> web.Response:
        self.metrics.refused.labels(refusal.reason).inc()
        return web.Response(status=refusal.status, text=refusal.detail + "\n")

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if not self.manager.accepting:
            return self.refuse(HandshakeRefused(503, "shutting_down", "server is shutting down"))
        no_room = self.spool.refusal() if self.spool is not None else None
        if no_room is not None:
            # Refused before the upgrade: a full disk would cut every live session instead.
            return self.refuse(HandshakeRefused(503, no_room[0], "no room for a session; retry"))
        limits = self.limits
        client_ip = limits.client_ip(request.remote or "", request.headers.get("X-Forwarded-For"))
        try:
            limits.admit(client_ip)
        except HandshakeRefused as refusal:
            return self.refuse(refusal)
        try:
            return await self._upgrade(request, client_ip)
        finally:
            limits.release(client_ip)

    async def _upgrade(self, request: web.Request, client_ip: str) -> web.StreamResponse:
        try:
            self.access.check_origin(request.headers.get("Origin", ""))
            token = self.access.authenticate(request.query.get(TOKEN_PARAM))
            remote = mask_remote(client_ip) if self.mask and client_ip else client_ip
            handshake = read_handshake(request, self.config, remote, self._located(client_ip))
            decoder = open_decoder(handshake)
            self.manager.check_resume(decoder, token)
        except HandshakeRefused as refusal:
            return self.refuse(refusal)
        ws = web.WebSocketResponse(
            protocols=(handshake.subprotocol,),
            compress=self.config.ingest.permessage_deflate,
            max_msg_size=self.config.ingest.max_message_bytes,
            autoclose=False,  # we answer a client's close ourselves: see _pump
        )
        await ws.prepare(request)
        traffic = self.metrics.traffic[metric_label(handshake.subprotocol)]
        traffic.connections += 1
        traffic.open += 1
        session = await self.manager.connect(decoder, handshake, ws, token)
        try:
            await self._pump(ws, session, decoder)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            traffic.open -= 1
            # aiohttp reads a close frame without a code as 0; RFC 6455 calls that 1005.
            code = 1005 if ws.close_code == 0 else ws.close_code
            await self.manager.disconnected(session, ws, code)
        return ws

    async def _pump(self, ws: web.WebSocketResponse, session: Session, decoder: Decoder) -> None:
        manager = self.manager
        metrics = self.metrics
        traffic = metrics.traffic[metric_label(session.dialect)]
        now = asyncio.get_running_loop().time
        max_session = self.config.ingest.max_session_bytes
        max_bad = self.config.ingest.max_bad_messages
        bad = 0
        mask = self.mask
        relative_time = decoder.relative_time
        while True:
            session.receiving = True  # seen by a drain only while the queue is empty
            msg = await ws.receive()
            session.receiving = False
            kind = msg.type
            if kind is WSMsgType.TEXT:
                text: str = msg.data
                size = len(text) if text.isascii() else len(text.encode())
                session.last_activity = now()
                session.messages += 1
                session.bytes_received += size
                traffic.messages += 1
                traffic.bytes += size
                if session.bytes_received > max_session:
                    metrics.dropped.labels("session_too_large").inc()
                    await manager.finish(session, EndReason.SESSION_TOO_LARGE, 1009)
                    return
                try:
                    results = decoder.feed(text)
                except ProtocolViolation as violation:
                    metrics.dropped.labels(violation.reason).inc()
                    session.dropped += 1
                    bad += 1
                    if bad >= max_bad:
                        await manager.finish(session, EndReason.BAD_MESSAGES, 1007)
                        return
                    continue
                for result in results:
                    if type(result) is DumpLine:
                        if mask:
                            result = self._masked(result, relative_time)
                        if manager.append(session, result):
                            try:
                                await manager.settle(session)
                            except OSError as write_error:
                                # The dump cannot be written (a full disk): end the session
                                # with what is stored. 1011 is not final for jitsi clients:
                                # they come back later and resend what was never acked.
                                log.error(
                                    "session %s: dump write failed: %s", session.id, write_error
                                )
                                if write_error.errno == errno.ENOSPC and self.spool is not None:
                                    self.spool.out_of_space()
                                metrics.dropped.labels("dump_error").inc()
                                await manager.finish(session, EndReason.DUMP_ERROR, 1011)
                                return
                    elif type(result) is Identity:
                        await manager.identity(session, result.fields)
                    elif type(result) is Reply:
                        await ws.send_str(result.text)
                    elif type(result) is EndOfSession:
                        session.ended_by_client = True
            elif kind is WSMsgType.BINARY:
                metrics.dropped.labels("binary_frame").inc()
                await manager.finish(session, EndReason.BINARY_FRAME, 1003)
                return
            elif kind is WSMsgType.ERROR:
                error = ws.exception()
                code = error.code if isinstance(error, WebSocketError) else 1002
                reason = _ERROR_REASONS.get(code, EndReason.PROTOCOL_ERROR)
                metrics.dropped.labels(reason.value).inc()
                await manager.finish(session, reason, code)
                return
            else:  # CLOSE, CLOSING, CLOSED
                if kind is WSMsgType.CLOSE:
                    # Echo the client's code, as RFC 6455 expects: the jitsi client reads
                    # the code of *our* close frame, and reconnects unless it is 3001/3002.
                    # Its reason names the session (closing.py): how a client learns it.
                    await ws.close(
                        code=echo_close_code(msg.data),
                        message=close_reason(session.id),
                        drain=False,
                    )
                return
