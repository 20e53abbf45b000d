"""The websocket handler: a short loop that feeds a dialect decoder and a session.

Everything about the wire format lives in the decoders; everything about a
session's life lives in ``sessions``. This module checks the upgrade request, moves
messages between the two, and turns hostile input into its defined answer. It is the
only code that writes to a client's socket and the only caller of its decoder: the
session layer asks for acknowledgements and closes through the connection's
``Connection`` (``sessions/connection.py``), which a small task per socket serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
from typing import Any, Protocol
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
from rtcstats_server.dialects.jitsi import FINAL_CLOSE_CODES
from rtcstats_server.dumps.privacy import mask_line, mask_remote
from rtcstats_server.exceptions import HandshakeRefused, ProtocolViolation
from rtcstats_server.ingest.access import TOKEN_PARAM, ClientAccess
from rtcstats_server.ingest.closing import close_reason
from rtcstats_server.ingest.limits import ConnectionLimits
from rtcstats_server.metadata.record import EndReason
from rtcstats_server.metrics import Metrics, close_code_label
from rtcstats_server.sessions.connection import Connection
from rtcstats_server.sessions.live import Client, LiveSession, SessionManager
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


def client_of(decoder: Decoder) -> Client:
    """What the session layer needs to know of the decoder's dialect."""
    return Client(
        dialect=decoder.subprotocol,
        client_session_id=decoder.client_session_id,
        sends_acks=decoder.sends_acks,
        resumable=decoder.resumable,
        is_reconnect=decoder.is_reconnect,
        file_format=decoder.file_format,
        relative_time=decoder.relative_time,
    )


class Elsewhere(Protocol):
    """Other processes that may hold a session (``serve --workers N``: http/relay.py).

    A resume that lands on a process without the session is relayed to the one that
    has it, so a session stays in one process and its dump in one file, whichever
    worker the kernel gives the reconnecting socket.
    """

    def relayed_for(self, request: web.Request) -> str | None:
        """The client address a sibling relayed this upgrade for; None if not relayed."""

    async def relay(
        self, request: web.Request, client: Client, client_ip: str
    ) -> web.StreamResponse | None:
        """Serve the upgrade through the process that holds ``client``'s session;
        None when no other process does (it is served here)."""


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
        elsewhere: Elsewhere | None = None,
    ) -> None:
        self.config = config
        self.elsewhere = elsewhere
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
        relayed_for = self.elsewhere.relayed_for(request) if self.elsewhere else None
        if relayed_for is not None:
            client_ip = relayed_for
        else:
            forwarded = request.headers.get("X-Forwarded-For")
            client_ip = limits.client_ip(request.remote or "", forwarded)
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
            client = client_of(decoder)
            if (
                self.elsewhere is not None
                and client.resumable
                and client.is_reconnect
                and not self.manager.holds(client)
            ):
                relayed = await self.elsewhere.relay(request, client, client_ip)
                if relayed is not None:
                    return relayed
            await self.manager.check_resume(client, token)
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
        connection = _Socket(self, ws, decoder)
        session, last_seq = await self.manager.connect(client, handshake, connection, token)
        ended_by_client = False
        try:
            for reply in decoder.opening(last_seq):
                if type(reply) is Reply:
                    await ws.send_str(reply.text)
            ended_by_client = await self._pump(ws, connection, session, decoder)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            traffic.open -= 1
            await connection.settled()
            # aiohttp reads a close frame without a code as 0; RFC 6455 calls that 1005.
            code = 1005 if ws.close_code == 0 else ws.close_code
            final = ended_by_client or code in FINAL_CLOSE_CODES
            await self.manager.disconnected(session, connection, code, final)
        return ws

    async def serve(self, connection: _Socket) -> None:
        """Do what the session layer asked of a connection, then return: acknowledge
        durable seqs (the sweeper's flushes), close it (its session ends, or a resume
        replaced it)."""
        ws = connection.ws
        try:
            await self._serve(ws, connection)
        finally:
            connection.task = None  # done: an idle socket keeps no task object

    async def _serve(self, ws: web.WebSocketResponse, connection: _Socket) -> None:
        """Until nothing is left to do: a close ends it, acks are sent as they come."""
        while not connection.closed:
            request = connection.close_request
            if request is not None:
                try:
                    if request.catch_up and not ws.closed:
                        await self._let_reader_catch_up(connection)
                    if not ws.closed:
                        if request.counted:
                            code = close_code_label(request.code)
                            self.metrics.closed_by_server.labels(code).inc()
                        with contextlib.suppress(ConnectionError, RuntimeError):
                            await ws.close(code=request.code, message=request.reason.encode())
                finally:
                    connection.ended()  # closed now, by us or before (aiohttp, the client)
                return
            if ws.closed or connection.durable_seq <= connection.told_seq:
                return
            await _acknowledge(ws, connection, connection.decoder)

    async def _let_reader_catch_up(self, connection: Connection) -> None:
        """Before the server closes a socket, let the reader store what it has read.

        Closing while the reader is busy makes aiohttp discard the messages already
        queued on that socket; once it waits in ``receive`` again, the queue is empty.
        Bounded: a client that keeps sending does not hold up the drain.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(2.0, self.config.server.shutdown_grace_s / 4)
        # Polled, not signalled: what we wait for is the reader *suspended* in receive,
        # and receive returns without suspending while messages are queued, so an
        # Event set before it would wake us too early.
        while not connection.receiving and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    async def _pump(
        self,
        ws: web.WebSocketResponse,
        connection: Connection,
        session: LiveSession,
        decoder: Decoder,
    ) -> bool:
        """Read until the socket closes or the session ends; True when the client
        said the session is over (no resume will follow)."""
        manager = self.manager
        metrics = self.metrics
        traffic = metrics.traffic[metric_label(session.client.dialect)]
        now = asyncio.get_running_loop().time
        max_session = self.config.ingest.max_session_bytes
        max_bad = self.config.ingest.max_bad_messages
        bad = 0
        mask = self.mask
        relative_time = decoder.relative_time
        ended_by_client = False
        while True:
            connection.receiving = True  # seen by a drain only while the queue is empty
            msg = await ws.receive()
            connection.receiving = False
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
                    return ended_by_client
                try:
                    results = decoder.feed(text)
                except ProtocolViolation as violation:
                    metrics.dropped.labels(violation.reason).inc()
                    session.dropped += 1
                    bad += 1
                    if bad >= max_bad:
                        await manager.finish(session, EndReason.BAD_MESSAGES, 1007)
                        return ended_by_client
                    continue
                for result in results:
                    if type(result) is DumpLine:
                        if mask:
                            result = self._masked(result, relative_time)
                        if manager.append(session, result):
                            if session.client_session_id is None and decoder.client_session_id:
                                manager.name_client(session, decoder.client_session_id)
                            try:
                                await manager.settle(session)
                                if connection.durable_seq > connection.told_seq:
                                    await _acknowledge(ws, connection, decoder)
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
                                return ended_by_client
                    elif type(result) is Identity:
                        await manager.identity(session, result.fields)
                    elif type(result) is Reply:
                        await ws.send_str(result.text)
                    elif type(result) is EndOfSession:
                        ended_by_client = True
            elif kind is WSMsgType.BINARY:
                metrics.dropped.labels("binary_frame").inc()
                await manager.finish(session, EndReason.BINARY_FRAME, 1003)
                return ended_by_client
            elif kind is WSMsgType.ERROR:
                error = ws.exception()
                code = error.code if isinstance(error, WebSocketError) else 1002
                reason = _ERROR_REASONS.get(code, EndReason.PROTOCOL_ERROR)
                metrics.dropped.labels(reason.value).inc()
                await manager.finish(session, reason, code)
                return ended_by_client
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
                return ended_by_client


class _Socket(Connection):
    """A connection as the handler holds it: the session layer's requests are served
    by a short task of the handler's, made only when there is something to do (an
    idle socket costs no task)."""

    __slots__ = ("decoder", "handler", "task", "ws")

    def __init__(self, handler: IngestHandler, ws: web.WebSocketResponse, decoder: Decoder) -> None:
        super().__init__()
        self.handler = handler
        self.ws = ws
        self.decoder = decoder
        self.task: asyncio.Task[None] | None = None

    def changed(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.handler.serve(self))

    async def settled(self) -> None:
        """The socket is gone: a close asked for is let finish (its close frame exchange
        is bounded by the websocket's timeout), anything else is moot."""
        task, self.task = self.task, None  # no cycle (task, frame, self) left to collect
        if task is not None and not task.done():
            if self.close_request is None:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.ended()


async def _acknowledge(ws: web.WebSocketResponse, connection: Connection, decoder: Decoder) -> None:
    """Tell the client the newest durable seq, once (3.1 ``sn``; other dialects: none)."""
    seq = connection.durable_seq
    if seq <= connection.told_seq or ws.closed:
        return
    reply = decoder.ack(seq)
    connection.told_seq = seq  # before the send: a second caller must not repeat it
    if reply is not None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(reply.text)
