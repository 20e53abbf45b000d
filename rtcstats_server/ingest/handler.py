"""The ingest handler: an upgrade checked, its websocket fed to a decoder and a session.

Everything about the wire format lives in the decoders, the websocket framing in
``frames.py`` and ``websocket.py``; everything about a session's life lives in
``sessions``. This module checks the upgrade request, moves messages between the
socket and the session, and turns hostile input into its defined answer. It is the
only code that writes to a client's socket and the only caller of its decoder: the
session layer asks for acknowledgements and closes through the connection's
``Connection`` (``sessions/connection.py``), which ``Stream`` carries out.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final, Protocol, cast
from urllib.parse import unquote_plus

from rtcstats_server.analysis.geo import GeoLocator
from rtcstats_server.analysis.geo_annotation import (
    CANDIDATE_PREFIXES,
    annotate_candidate,
    annotation,
)
from rtcstats_server.config import Config
from rtcstats_server.dialects import Decoder, choose_subprotocol, metric_label, open_decoder
from rtcstats_server.dialects.base import (
    DumpLine,
    EndOfSession,
    Handshake,
    Identity,
    Reply,
    Result,
)
from rtcstats_server.dialects.jitsi import FINAL_CLOSE_CODES
from rtcstats_server.dumps.privacy import mask_line, mask_remote
from rtcstats_server.exceptions import HandshakeRefused, ProtocolViolation
from rtcstats_server.ingest import upgrade
from rtcstats_server.ingest.access import TOKEN_PARAM, ClientAccess
from rtcstats_server.ingest.closing import close_reason
from rtcstats_server.ingest.frames import FrameReader, Inflater
from rtcstats_server.ingest.limits import ConnectionLimits
from rtcstats_server.ingest.upgrade import UpgradeRequest
from rtcstats_server.ingest.websocket import WebSocket
from rtcstats_server.metadata.record import EndReason
from rtcstats_server.metrics import Metrics, Traffic, close_code_label
from rtcstats_server.sessions.connection import CloseRequest, Connection
from rtcstats_server.sessions.live import Client, LiveSession, SessionManager
from rtcstats_server.storage.spool import Spool

log = logging.getLogger(__name__)

#: Request paths we store as the session's url: printable, no traversal, bounded.
PATH_PATTERN = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")

#: Protocol-error close codes (frames.py) → why the session ended.
_ERROR_REASONS = {1009: EndReason.MESSAGE_TOO_BIG, 1007: EndReason.BAD_MESSAGES}
#: How long a client has to answer our close frame before its socket is cut; at a
#: drain (shutdown), where every session is closed at once and the process waits.
CLOSE_TIMEOUT_S: Final = 10.0
DRAIN_CLOSE_TIMEOUT_S: Final = 1.0


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
    request: UpgradeRequest,
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
    subprotocol = choose_subprotocol(request.header("Sec-WebSocket-Protocol"))
    return Handshake(
        path=raw,
        query=request.query(),
        subprotocol=subprotocol,
        user_agent=header_text(request, "User-Agent", 512),
        origin=header_text(request, "Origin", 256),
        remote=request.remote if remote is None else remote,
        location=location,
    )


def header_text(request: UpgradeRequest, name: str, limit: int) -> str:
    """A header as text we can store: read as Latin-1 (every byte kept), then taken as
    the UTF-8 a browser sends, bytes that are not UTF-8 replaced (the dump's metadata
    line and the record are JSON)."""
    value = request.header(name)
    if not value.isascii():
        value = value.encode("latin-1").decode("utf-8", "replace")
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

    def relayed_for(self, request: UpgradeRequest) -> str | None:
        """The client address a sibling relayed this upgrade for; None if not relayed."""

    async def relay(
        self,
        request: UpgradeRequest,
        sent: bytes,
        client_ip: str,
        client: Client,
        transport: asyncio.Transport,
    ) -> bool:
        """Hand the connection to the process that holds ``client``'s session (``sent``:
        every byte the client sent so far, passed on); False when no other process
        does (it is served here). Once True, the transport is the relay's."""


def echo_close_code(code: int) -> int:
    """The code to answer a client's close frame with (1000 when it sent none)."""
    return code if 1000 <= code <= 4999 and code not in (1005, 1006, 1015) else 1000


class IngestHandler:
    """Takes upgrades from the front door (``http/front.py``), one ``Stream`` per socket."""

    def __init__(
        self,
        config: Config,
        manager: SessionManager,
        metrics: Metrics,
        spool: Spool | None = None,
        access: ClientAccess | None = None,
        locator: GeoLocator | None = None,
        elsewhere: Elsewhere | None = None,
        answer_headers: tuple[tuple[str, str], ...] = (),
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
        #: Read for every message: kept here, a config attribute chain is two lookups.
        self.max_session_bytes = config.ingest.max_session_bytes
        self.max_bad_messages = config.ingest.max_bad_messages
        #: Header fields every answer to an upgrade carries (a worker names itself).
        self.answer_headers = answer_headers
        #: Every open ingest socket, so a stopping server can cut the ones left.
        self.sockets: set[WebSocket] = set()
        #: Short tasks under way (held: the loop keeps only weak references to tasks).
        self._tasks: set[asyncio.Task[None]] = set()
        #: The loop's clock (a session's last activity).
        self.now: Callable[[], float] = time.monotonic

    def later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _located(self, client_ip: str) -> dict[str, Any] | None:
        found = self.locator.lookup(client_ip) if self.locator and client_ip else None
        return annotation(found) if found is not None else None

    def masked(self, line: DumpLine, decoder: Decoder) -> DumpLine:
        """The line with its addresses masked; a candidate's location written in first
        (geo_annotation.py: the analysis cannot look up a masked address)."""
        text = line.text
        if self.locator is not None and text.startswith(CANDIDATE_PREFIXES):
            text = annotate_candidate(text, self.locator, decoder.relative_time) or text
        masked = mask_line(text, decoder.standard_stats)
        if masked is not None:
            return DumpLine(masked, line.seq)
        return line if text is line.text else DumpLine(text, line.seq)

    def _refuse(self, transport: asyncio.Transport, refusal: HandshakeRefused) -> None:
        self.metrics.refused.labels(refusal.reason).inc()
        transport.write(upgrade.refusal(refusal.status, refusal.detail, self.answer_headers))
        transport.close()

    def take(
        self, request: UpgradeRequest, head: bytes, early: bytes, transport: asyncio.Transport
    ) -> None:
        """The front door read ``head``, an upgrade; the connection is ours from here
        (reading paused). ``early``: what came after the head, read before the rest."""
        self.now = asyncio.get_running_loop().time
        self.later(self._take(request, head, early, transport))

    async def _take(
        self, request: UpgradeRequest, head: bytes, early: bytes, transport: asyncio.Transport
    ) -> None:
        if not self.manager.accepting:
            self._refuse(
                transport, HandshakeRefused(503, "shutting_down", "server is shutting down")
            )
            return
        no_room = self.spool.refusal() if self.spool is not None else None
        if no_room is not None:
            # Refused before the upgrade: a full disk would cut every live session instead.
            refusal = HandshakeRefused(503, no_room[0], "no room for a session; retry")
            self._refuse(transport, refusal)
            return
        limits = self.limits
        relayed_for = self.elsewhere.relayed_for(request) if self.elsewhere else None
        if relayed_for is not None:
            client_ip = relayed_for
        else:
            forwarded = request.headers.get("x-forwarded-for")
            client_ip = limits.client_ip(request.remote, forwarded)
        try:
            limits.admit(client_ip)
        except HandshakeRefused as refusal:
            self._refuse(transport, refusal)
            return
        stream: list[Stream] = []  # made by _open once the socket is a websocket
        try:
            await self._open(request, head, early, transport, client_ip, stream)
        except Exception:
            log.exception("upgrade from %s failed", client_ip or "?")
            transport.abort()
        finally:
            if not stream:
                limits.release(client_ip)

    async def _open(
        self,
        request: UpgradeRequest,
        head: bytes,
        early: bytes,
        transport: asyncio.Transport,
        client_ip: str,
        made: list[Stream],
    ) -> None:
        """Refuse, relay or open the websocket; a stream made is appended to ``made``
        (it releases the client's place in the limits when its socket ends)."""
        try:
            self.access.check_origin(request.header("Origin"))
            token = self.access.authenticate(request.query().get(TOKEN_PARAM))
            remote = mask_remote(client_ip) if self.mask and client_ip else client_ip
            handshake = read_handshake(request, self.config, remote, self._located(client_ip))
            decoder = open_decoder(handshake)
            client = client_of(decoder)
            if (
                self.elsewhere is not None
                and client.resumable
                and client.is_reconnect
                and not self.manager.holds(client)
                and await self.elsewhere.relay(
                    request, head + b"\r\n\r\n" + early, client_ip, client, transport
                )
            ):
                return
            await self.manager.check_resume(client, token)
        except HandshakeRefused as refusal:
            self._refuse(transport, refusal)
            return
        if transport.is_closing():
            return  # the client left during the handshake
        extension = None
        inflater = None
        offer = request.deflate_offer() if self.config.ingest.permessage_deflate else None
        if offer is not None:
            extension = upgrade.deflate_answer(offer)
            if extension is not None:
                inflater = Inflater(
                    self.config.ingest.max_message_bytes,
                    reset_each_message="client_no_context_takeover" in offer,
                )
        ws = WebSocket(
            FrameReader(self.config.ingest.max_message_bytes, inflater),
            close_timeout_s=CLOSE_TIMEOUT_S,
        )
        transport.write(
            upgrade.switching(request, handshake.subprotocol, extension, self.answer_headers)
        )
        transport.set_protocol(cast(asyncio.BaseProtocol, ws))  # a protocol by its methods
        ws.connection_made(transport)
        if early:
            ws.data_received(early)  # held (the websocket starts paused) until start()
        self.sockets.add(ws)
        traffic = self.metrics.traffic[metric_label(handshake.subprotocol)]
        traffic.connections += 1
        traffic.open += 1
        limits = self.limits
        stream = Stream(self, ws, decoder, traffic, lambda: limits.release(client_ip))
        made.append(stream)
        try:
            session, last_seq = await self.manager.connect(client, handshake, stream, token)
        except BaseException:
            stream.gone()
            ws.abort()
            raise
        stream.session = session
        for reply in decoder.opening(last_seq):
            if type(reply) is Reply:
                ws.send_text(reply.text)
        ws.start(stream)

    def cut_all(self) -> None:
        """Drop every socket left (after the drain): nothing of theirs is pending."""
        for ws in list(self.sockets):
            ws.abort()


class Stream(Connection):
    """One socket's messages into its session, and the session's requests (acks,
    closes) back to the socket.

    Messages are handled in ``on_text``, in the call that read them; the few that must
    wait (a record to create, a frame to flush, an identity to store, the session's
    end) go on in a short task while the socket holds the next ones (``WebSocket``'s
    backpressure), so they are handled in order. An idle socket has no task.
    """

    __slots__ = (
        "bad",
        "counted",
        "decoder",
        "ended_by_client",
        "handler",
        "on_end",
        "session",
        "task",
        "traffic",
        "ws",
    )

    def __init__(
        self,
        handler: IngestHandler,
        ws: WebSocket,
        decoder: Decoder,
        traffic: Traffic,
        on_end: Callable[[], None],
    ) -> None:
        super().__init__()
        self.handler = handler
        self.ws = ws
        self.decoder = decoder
        self.traffic = traffic
        self.session: LiveSession | None = None
        self.bad = 0
        self.ended_by_client = False
        #: The awaited part of a message (while it runs, the socket holds the next ones).
        self.task: asyncio.Task[None] | None = None
        #: Releases the client's place in the connection limits.
        self.on_end = on_end
        #: Still counted open (in the traffic gauge and the limits).
        self.counted = True

    # -- the websocket's listener ---------------------------------------------------------

    def on_text(self, text: str) -> bool:
        session = self.session
        assert session is not None
        handler = self.handler
        size = len(text) if text.isascii() else len(text.encode())
        session.last_activity = handler.now()
        session.messages += 1
        session.bytes_received += size
        traffic = self.traffic
        traffic.messages += 1
        traffic.bytes += size
        if session.bytes_received > handler.max_session_bytes:
            handler.metrics.dropped.labels("session_too_large").inc()
            return self._later(self._end(EndReason.SESSION_TOO_LARGE, 1009))
        try:
            results = self.decoder.feed(text)
        except ProtocolViolation as violation:
            handler.metrics.dropped.labels(violation.reason).inc()
            session.dropped += 1
            self.bad += 1
            if self.bad >= handler.max_bad_messages:
                return self._later(self._end(EndReason.BAD_MESSAGES, 1007))
            return True
        manager = handler.manager
        for index, result in enumerate(results):
            if type(result) is DumpLine:
                if handler.mask:
                    result = handler.masked(result, self.decoder)
                if manager.append(session, result) and not self._settle_now(session):
                    return self._later(self._awaited(results, index, appended=True))
            elif type(result) is Reply:
                self.ws.send_text(result.text)
            elif type(result) is EndOfSession:
                self.ended_by_client = True
            else:  # Identity
                return self._later(self._awaited(results, index, appended=False))
        return True

    def _later(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run ``work`` in a task; False: the socket holds further messages meanwhile."""
        self.task = asyncio.get_running_loop().create_task(self._run(work))
        return False

    async def _run(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            # A fault of ours (a store that raised what it should not): the socket is
            # cut, not left paused for ever; its session is detached or finished as
            # after any drop, and the client's resume resends what was not acked.
            session_id = self.session.id if self.session is not None else "?"
            log.exception("session %s: a message could not be handled; socket cut", session_id)
            self.ws.abort()
            return
        finally:
            self.task = None
        if self.close_request is not None:
            self._close_now(self.close_request)
        elif not self.ws.close_sent:
            self.ws.resume()

    async def _awaited(self, results: list[Result], index: int, appended: bool) -> None:
        """``results[index:]``, awaiting where they must (``results[index]`` already
        appended when ``appended``)."""
        session = self.session
        assert session is not None
        handler = self.handler
        manager = handler.manager
        for position in range(index, len(results)):
            if self.close_request is not None:
                return
            result = results[position]
            if type(result) is DumpLine:
                if not (appended and position == index):
                    if handler.mask:
                        result = handler.masked(result, self.decoder)
                    if not manager.append(session, result):
                        continue
                if not await self._settle(session):
                    return
            elif type(result) is Identity:
                await manager.identity(session, result.fields)
            elif type(result) is Reply:
                self.ws.send_text(result.text)
            elif type(result) is EndOfSession:
                self.ended_by_client = True

    def _settle_now(self, session: LiveSession) -> bool:
        """``_settle`` without a task, when nothing must be awaited; False: await it."""
        if session.client_session_id is None and self.decoder.client_session_id:
            return False  # a pusher naming its session: the awaited path does it
        try:
            done = self.handler.manager.settle_now(session)
        except OSError:
            return False  # the awaited path writes again, and ends the session if it fails
        if done:
            self.acknowledge_now()
        return done

    async def _settle(self, session: LiveSession) -> bool:
        """Create the record, flush, acknowledge; False when the dump cannot be written
        (the session is ended)."""
        manager = self.handler.manager
        if session.client_session_id is None and self.decoder.client_session_id:
            manager.name_client(session, self.decoder.client_session_id)
        try:
            await manager.settle(session)
        except OSError as write_error:
            # The dump cannot be written (a full disk): end the session with what is
            # stored. 1011 is not final for jitsi clients: they come back later and
            # resend what was never acked.
            log.error("session %s: dump write failed: %s", session.id, write_error)
            spool = self.handler.spool
            if write_error.errno == errno.ENOSPC and spool is not None:
                spool.out_of_space()
            self.handler.metrics.dropped.labels("dump_error").inc()
            await manager.finish(session, EndReason.DUMP_ERROR, 1011)
            return False
        self.acknowledge_now()
        return True

    async def _end(self, reason: EndReason, code: int) -> None:
        session = self.session
        assert session is not None
        await self.handler.manager.finish(session, reason, code)

    def on_binary(self) -> None:
        self.handler.metrics.dropped.labels("binary_frame").inc()
        self._later(self._end(EndReason.BINARY_FRAME, 1003))

    def on_error(self, code: int, detail: str) -> None:
        reason = _ERROR_REASONS.get(code, EndReason.PROTOCOL_ERROR)
        self.handler.metrics.dropped.labels(reason.value).inc()
        log.debug("websocket protocol error (%d): %s", code, detail)
        self._later(self._end(reason, code))

    def on_close_frame(self, code: int) -> None:
        # Echo the client's code, as RFC 6455 expects: the jitsi client reads the code
        # of *our* close frame, and reconnects unless it is 3001/3002. Its reason names
        # the session (closing.py): how a client learns it.
        session = self.session
        assert session is not None
        self.ws.close(echo_close_code(code), close_reason(session.id))

    def on_lost(self) -> None:
        self.handler.sockets.discard(self.ws)
        self.handler.later(self._lost())

    async def _lost(self) -> None:
        """The socket is gone: a message under way is let finish (it may be storing
        what the client sent last), then the session is told."""
        self.gone()
        task = self.task
        if task is not None and not task.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        session = self.session
        if session is None:
            return
        code = self.ws.close_code
        final = self.ended_by_client or code in FINAL_CLOSE_CODES
        await self.handler.manager.disconnected(session, self, code, final)

    def gone(self) -> None:
        """The socket is closed: counted out and its limits released, once."""
        if self.counted:
            self.counted = False
            self.traffic.open -= 1
            self.on_end()
        self.ended()

    # -- the session's requests -----------------------------------------------------------

    def changed(self) -> None:
        request = self.close_request
        if request is None:
            self.acknowledge_now()
        elif self.task is None or not request.catch_up:
            self._close_now(request)
        # else (a drain): the message under way is stored first; _run closes after it

    def acknowledge_now(self) -> None:
        """Tell the client the newest durable seq, once (3.1 ``sn``; other dialects: none)."""
        seq = self.durable_seq
        if seq <= self.told_seq or self.ws.closed:
            return
        reply = self.decoder.ack(seq)
        self.told_seq = seq
        if reply is not None:
            self.ws.send_text(reply.text)

    def _close_now(self, request: CloseRequest) -> None:
        """Send our close frame. For the session the socket is closed from here (a
        message that still comes is dropped: ``WebSocket`` reads only the client's
        close now), so a finish or a resume waits for no client; the socket itself
        lingers until the client answers, or its time is up."""
        ws = self.ws
        if not ws.closed:
            if request.counted and not ws.close_sent:
                code = close_code_label(request.code)
                self.handler.metrics.closed_by_server.labels(code).inc()
            wait = DRAIN_CLOSE_TIMEOUT_S if request.catch_up else None
            ws.close(request.code, request.reason.encode(), wait)
        self.ended()
