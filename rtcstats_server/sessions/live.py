"""A session's life, and the one object allowed to move it forward.

    streaming ──socket lost (3.1 only)──▶ detached ──resume──▶ streaming
        │                                     │
        └────────────── finish ───────────────┴──▶ finishing ──▶ stored

``SessionManager`` owns every live session: it creates or resumes them on connect,
appends their events to the dump, flushes and acknowledges, detaches them when a
resumable client drops, and finishes them (close line, store the dump, write the
record). A sweeper task does what time decides: periodic flushes, idle timeouts,
expired resumes, and finished sessions whose record could not be written yet. At
start it finishes what a crash left behind (``recovered``).

Who may continue a session: a resume (``isReconnect=true``) must come from the same
token holder as the session's first connection (anonymous sessions: anyone who knows
the statsSessionId, see README "Security"); a fresh connection reusing a live
session's id gets a session of its own and never takes over the id's resumes; the
first identity names a session for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket as socket_module
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from rtcstats_server.analysis.stored import quality_fields
from rtcstats_server.config import Config
from rtcstats_server.dialects import Decoder
from rtcstats_server.dialects.base import ClientToken, DumpLine, Handshake
from rtcstats_server.dialects.jitsi import FINAL_CLOSE_CODES
from rtcstats_server.dumps.layout import header_lines
from rtcstats_server.dumps.repair import repair_live_dump
from rtcstats_server.dumps.writer import DumpWriter
from rtcstats_server.exceptions import HandshakeRefused, NotFound, RtcstatsError, StoreUnavailable
from rtcstats_server.logs import LOG_FIELDS
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.record import EndReason, SessionState, essential_fields, utcnow
from rtcstats_server.metrics import Metrics, close_code_label
from rtcstats_server.storage.base import DumpStore, StoredDump, dump_key

log = logging.getLogger(__name__)

#: Close code written when the connection ended without a close frame.
ABNORMAL_CLOSURE = 1006

#: A seq further than this past the last stored one is refused: no real client gets
#: there (one that was offline long keeps counting, but not by a million entries),
#: and storing it would make the real client's next entries look like duplicates.
MAX_SEQ_STEP = 1_000_000


class ClientSocket(Protocol):
    """The part of a websocket connection a session uses."""

    @property
    def closed(self) -> bool: ...

    async def send_str(self, data: str, compress: int | None = None) -> None: ...

    async def close(
        self, *, code: int = 1000, message: bytes = b"", drain: bool = True
    ) -> bool: ...


def default_node_id(data_dir: Path) -> str:
    """This collector's name in records, kept in the data dir.

    Tied to the data dir rather than the hostname: a container restarted with a new
    hostname but the same volume must still find (and recover) its own sessions.
    """
    marker = data_dir / "node-id"
    try:
        return marker.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    node_id = f"{socket_module.gethostname()[:40]}-{uuid.uuid4().hex[:8]}"
    data_dir.mkdir(parents=True, exist_ok=True)
    temporary = marker.with_suffix(".tmp")
    temporary.write_text(node_id + "\n", encoding="ascii")
    os.replace(temporary, marker)
    return node_id


class Session:
    __slots__ = (
        "acked_seq",
        "bytes_received",
        "client_session_id",
        "close_code",
        "connections",
        "decoder",
        "detached_at",
        "dialect",
        "dirty_since",
        "dropped",
        "ended_by_client",
        "ending",
        "fields",
        "finished",
        "handshake",
        "holder",
        "id",
        "identified",
        "last_activity",
        "last_seq",
        "lines",
        "messages",
        "pinned",
        "put_done",
        "quality",
        "receiving",
        "recorded",
        "sealed",
        "socket",
        "started_at",
        "state",
        "stored",
        "unacked",
        "writer",
    )

    def __init__(
        self,
        session_id: str,
        decoder: Decoder,
        handshake: Handshake,
        writer: DumpWriter,
        token: ClientToken | None = None,
    ):
        self.id = session_id
        self.decoder = decoder
        self.handshake = handshake
        self.dialect = decoder.subprotocol
        self.client_session_id = decoder.client_session_id
        self.writer = writer
        self.state = SessionState.STREAMING
        self.started_at = utcnow()
        self.socket: ClientSocket | None = None
        self.fields: dict[str, Any] = {}
        self.last_seq = 0
        self.acked_seq = 0
        self.unacked = 0
        self.lines = 0
        self.messages = 0
        self.bytes_received = 0
        self.dropped = 0
        self.connections = 0
        self.recorded = False
        self.receiving = False
        self.sealed = False
        self.ended_by_client = False
        self.last_activity = 0.0
        self.dirty_since = 0.0
        self.detached_at = 0.0
        self.close_code: int | None = None
        self.finished: asyncio.Future[None] | None = None
        #: Who streams it: the token holder of the first connection (None: anonymous).
        self.holder = token.holder if token is not None else None
        #: Record fields the token set; identity messages never change them.
        self.pinned = frozenset(token.fields) if token is not None else frozenset()
        if token is not None:
            self.fields.update(token.fields)
        #: The first identity message has named the session; later ones are only dumped.
        self.identified = False
        #: (end reason, close code, end time), set when the dump is closed.
        self.ending: tuple[EndReason, int, datetime] | None = None
        #: The dump was handed to the store (``stored``: where; None: there was none).
        self.put_done = False
        self.stored: StoredDump | None = None
        self.quality: dict[str, Any] | None = None


class SessionManager:
    def __init__(
        self,
        config: Config,
        dumps: DumpStore,
        records: SessionStore,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.dumps = dumps
        self.records = records
        self.metrics = metrics
        self.node_id = config.server.node_id  # default resolved in start(), off the loop
        self.live_dir = config.live_dir
        self.sessions: dict[str, Session] = {}
        self.by_client: dict[str, Session] = {}
        #: Finished sessions whose dump or record could not be stored yet, retried by
        #: the sweeper; what a restart finds of them, crash recovery links.
        self.unrecorded: dict[str, Session] = {}
        self._retry_at = 0.0
        self._sweeper: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._loop_time = time.monotonic
        self.accepting = True
        #: Called with a session id once its record is stored (forwarders enqueue here).
        self.on_stored: list[Callable[[str], Awaitable[None]]] = []
        #: Quality summaries computed at once, each on a thread of its own: a drain
        #: finishes every live session together and must not start thousands.
        self._summaries = asyncio.Semaphore(4)

    # -- start and stop -------------------------------------------------------------

    async def start(self) -> None:
        if not self.node_id:
            self.node_id = await asyncio.to_thread(default_node_id, self.config.server.data_dir)
        await asyncio.to_thread(self.live_dir.mkdir, parents=True, exist_ok=True)
        try:
            await self.recover()
        except StoreUnavailable as exc:
            # The metadata database is away: ingest now, recover once it answers.
            log.warning("crash recovery postponed until the session store answers: %s", exc)
            self._recovery = asyncio.create_task(self._recover_later(), name="crash-recovery")
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="session-sweeper")

    async def stop(self) -> None:
        """Drain: every live session is finished and stored before we return."""
        self.accepting = False
        if self._recovery is not None:
            recovery, self._recovery = self._recovery, None
            recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recovery
        if self._sweeper is not None:
            sweeper, self._sweeper = self._sweeper, None
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        live = list(self.sessions.values())
        results = await asyncio.gather(
            *(self.finish(s, EndReason.SHUTDOWN, 1001) for s in live), return_exceptions=True
        )
        for session, result in zip(live, results, strict=True):
            if isinstance(result, BaseException):
                log.error("session %s could not be stored at shutdown: %r", session.id, result)
        await self._retry_unrecorded()
        for session_id in self.unrecorded:
            log.error("session %s: not recorded at shutdown; linked at the next start", session_id)

    # -- connect, resume ------------------------------------------------------------

    def check_resume(self, decoder: Decoder, token: ClientToken | None) -> None:
        """Refuse (403, before the upgrade) a resume of a session someone else holds.

        Without tokens every holder is anonymous, so anyone who knows a live
        statsSessionId may resume it: that is the trust model of tokenless deployments.
        """
        session = self._resumable(decoder)
        if session is not None and session.holder != _holder(token):
            raise HandshakeRefused(
                403, "resume_not_owner", "this session is streamed by another token holder"
            )

    async def connect(
        self,
        decoder: Decoder,
        handshake: Handshake,
        sock: ClientSocket,
        token: ClientToken | None = None,
    ) -> Session:
        session = self._resumable(decoder)
        if session is not None and session.holder != _holder(token):
            session = None  # checked before the upgrade; changed hands meanwhile: a new one
        if session is not None:
            old = session.socket
            session.socket = None
            if old is not None and not old.closed:
                await old.close(code=1000, message=b"resumed on a new connection")
            try:
                await self.flush(session, ack=False)  # sn must name a durable seq
            except OSError as exc:
                log.error("session %s: dump write failed at resume: %s", session.id, exc)
                await self.finish(session, EndReason.DUMP_ERROR, 1011)
                session = None
        if session is not None:
            session.decoder = decoder
            session.state = SessionState.STREAMING
            if session.recorded:
                await self._write_live(
                    session, {"state": SessionState.STREAMING.value, "updated_at": utcnow()}
                )
            self.metrics.resumed.inc()
            log.info(
                "session %s resumed (client %s, last seq %d)",
                session.id,
                session.client_session_id,
                session.last_seq,
            )
        else:
            session = self._new_session(decoder, handshake, token)
        session.socket = sock
        session.connections += 1
        session.last_activity = self._loop_time()
        for reply in decoder.opening(session.last_seq):
            await sock.send_str(reply.text)  # type: ignore[union-attr]
        session.acked_seq = session.last_seq
        return session

    def _resumable(self, decoder: Decoder) -> Session | None:
        client_id = decoder.client_session_id
        if not decoder.resumable or client_id is None:
            return None
        if not getattr(decoder, "is_reconnect", False):
            return None
        session = self.by_client.get(client_id)
        if session is None or session.dialect != decoder.subprotocol:
            return None
        if session.state not in (SessionState.STREAMING, SessionState.DETACHED):
            return None
        return session

    def _new_session(
        self, decoder: Decoder, handshake: Handshake, token: ClientToken | None = None
    ) -> Session:
        session_id = uuid.uuid4().hex
        writer = DumpWriter(
            self.live_dir / f"{session_id}.rtcstats.zst",
            self.config.dumps.zstd_level,
            self.config.dumps.fsync,
        )
        session = Session(session_id, decoder, handshake, writer, token)
        meta = {
            "fileFormat": decoder.file_format,
            "clientProtocol": decoder.subprotocol,
            "url": handshake.path,
            "origin": handshake.origin or None,
            "userAgent": handshake.user_agent or None,
            "startTime": round(session.started_at.timestamp() * 1000),
            "remoteAddresses": [handshake.remote] if handshake.remote else None,
            "sessionId": session_id,
            "statsSessionId": decoder.client_session_id,
            "collector": "rtcstats-collector",
            "location": handshake.location,  # looked up before masking (geo_annotation.py)
        }
        for line in header_lines(meta):
            writer.append(line)
        self.sessions[session_id] = session
        if decoder.client_session_id is not None:
            # A fresh connection reusing a live session's id gets a session of its own,
            # but the id keeps leading to the first: its client's resumes must land there.
            self.by_client.setdefault(decoder.client_session_id, session)
        return session

    # -- events ---------------------------------------------------------------------

    async def accept(self, session: Session, line: DumpLine) -> None:
        """Append one event; flush when a size or acknowledgement threshold is met."""
        if self.append(session, line):
            await self.settle(session)

    def append(self, session: Session, line: DumpLine) -> bool:
        """The synchronous part of ``accept``: True when ``settle`` must follow.

        Split so the ingest loop pays for a coroutine only on the few messages that
        create the record or fill a frame, not on every message.
        """
        if session.sealed:
            # The close line is written: nothing may follow it. Messages the handler
            # still had queued when the server closed the socket end here, counted.
            session.dropped += 1
            self.metrics.dropped.labels("after_close").inc()
            return False
        seq = line.seq
        if seq is not None:
            if seq <= session.last_seq:
                session.dropped += 1
                self.metrics.dropped.labels("duplicate_seq").inc()
                return False
            if seq - session.last_seq > MAX_SEQ_STEP:
                session.dropped += 1
                self.metrics.dropped.labels("seq_too_far").inc()
                return False
            session.last_seq = seq
        writer = session.writer
        if session.dirty_since == 0.0:
            session.dirty_since = self._loop_time()
        writer.append(line.text)
        session.lines += 1
        session.unacked += 1
        return (
            not session.recorded
            or writer.buffered_bytes >= self.config.dumps.flush_bytes
            or (
                session.decoder.sends_acks
                and session.unacked >= self.config.ingest.ack_every_entries
            )
        )

    async def settle(self, session: Session) -> None:
        """Create the record (after the append: a racing finish still sees the line)
        and flush when a size or acknowledgement threshold is met."""
        if not session.recorded:
            await self._create_record(session)
        if session.writer.buffered_bytes >= self.config.dumps.flush_bytes or (
            session.decoder.sends_acks and session.unacked >= self.config.ingest.ack_every_entries
        ):
            await self.flush(session)

    async def _create_record(self, session: Session) -> None:
        session.recorded = True
        if session.client_session_id is None:
            client_id = session.decoder.client_session_id  # pushers name it in messages
            session.client_session_id = client_id
            if client_id is not None:
                self.by_client.setdefault(client_id, session)
        await self._write_live(
            session, {**self._base_fields(session), "state": SessionState.STREAMING.value}
        )
        log.info(
            "session %s started: client %s, dialect %s, url %s, from %s",
            session.id,
            session.client_session_id,
            session.dialect,
            session.handshake.path,
            session.handshake.remote,
            extra={
                LOG_FIELDS: {
                    "event": "session_start",
                    "session_id": session.id,
                    "client_session_id": session.client_session_id,
                    "dialect": session.dialect,
                    "url": session.handshake.path,
                    "node_id": self.node_id,
                }
            },
        )

    def _base_fields(self, session: Session) -> dict[str, Any]:
        """What every write of a record carries, so any one of them can create it."""
        hs = session.handshake
        return {
            "client_session_id": session.client_session_id,
            "dialect": session.dialect,
            "url": hs.path,
            "origin": hs.origin or None,
            "user_agent": hs.user_agent or None,
            "remote_address": hs.remote or None,
            "node_id": self.node_id,
            "started_at": session.started_at,
            "updated_at": utcnow(),
            **session.fields,
        }

    async def identity(self, session: Session, fields: dict[str, str]) -> None:
        """The first identity names the session; later ones (a resend, or anyone who
        resumed it) are in the dump but never change the record. Fields a token
        pinned are never taken from a message."""
        if not fields or session.identified:
            return
        session.identified = True
        fields = {name: value for name, value in fields.items() if name not in session.pinned}
        if not fields:
            return
        session.fields.update(fields)
        if session.recorded:
            await self._write_live(session, {**fields, "updated_at": utcnow()})

    async def flush(self, session: Session, ack: bool = True) -> None:
        """Make everything appended durable, then let a 3.1 client trim its buffer."""
        last = session.last_seq
        writer = session.writer
        before_raw, before_compressed = writer.raw_bytes, writer.compressed_bytes
        await writer.flush()
        self.metrics.dump_raw.inc(writer.raw_bytes - before_raw)
        self.metrics.dump_compressed.inc(writer.compressed_bytes - before_compressed)
        session.dirty_since = 0.0
        session.unacked = 0
        sock = session.socket
        if ack and last > session.acked_seq and sock is not None and not sock.closed:
            reply = session.decoder.ack(last)
            if reply is not None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await sock.send_str(reply.text)
                    session.acked_seq = last

    # -- disconnect, finish -----------------------------------------------------------

    async def disconnected(self, session: Session, sock: ClientSocket, code: int | None) -> None:
        """The handler's socket is gone: detach a resumable session, finish the rest."""
        if session.socket is not sock:
            return  # taken over by a resume, or finished by the server
        session.socket = None
        if session.state not in (SessionState.STREAMING, SessionState.DETACHED):
            return
        code = ABNORMAL_CLOSURE if code is None else code
        session.close_code = code
        grace = self.config.ingest.resume_grace_s
        if (
            session.decoder.resumable
            and not session.ended_by_client
            and code not in FINAL_CLOSE_CODES
            and grace > 0
            and self.accepting
        ):
            session.state = SessionState.DETACHED
            session.detached_at = self._loop_time()
            with contextlib.suppress(OSError):  # kept buffered; retried, or stored at finish
                await self.flush(session, ack=False)
            if session.recorded:
                await self._write_live(
                    session, {"state": SessionState.DETACHED.value, "updated_at": utcnow()}
                )
            return
        reason = EndReason.CONFERENCE_LEFT if code == 3001 else EndReason.CLIENT_CLOSED
        await self.finish(session, reason, code)

    async def finish(self, session: Session, reason: EndReason, code: int) -> None:
        """Close line, durable dump, record: exactly once per session."""
        if session.finished is not None:
            await asyncio.shield(session.finished)
            return
        session.finished = asyncio.get_running_loop().create_future()
        try:
            await self._finish(session, reason, code)
            session.finished.set_result(None)
        except BaseException as exc:
            session.finished.set_exception(exc)
            session.finished.exception()  # retrieved: callers that wait re-raise it
            raise

    async def _finish(self, session: Session, reason: EndReason, code: int) -> None:
        session.state = SessionState.FINISHING
        if reason is EndReason.SHUTDOWN and session.socket is not None:
            await self._let_handler_catch_up(session)
        sock, session.socket = session.socket, None
        if sock is not None and not sock.closed:
            self.metrics.closed_by_server.labels(close_code_label(code)).inc()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await sock.close(code=code, message=reason.value.encode())
        self.sessions.pop(session.id, None)
        if self.by_client.get(session.client_session_id or "") is session:
            del self.by_client[session.client_session_id or ""]
        writer = session.writer
        session.sealed = True
        if session.lines == 0:
            await asyncio.to_thread(writer.discard)
            return
        writer.append(session.decoder.close_line(code))
        before_raw, before_compressed = writer.raw_bytes, writer.compressed_bytes
        try:
            await writer.close()
        except OSError as exc:
            # A full or failing disk. The frames already written still decode (a failed
            # write is cut back off); what never reached the disk was never acknowledged.
            log.error(
                "session %s: dump write failed, storing what was written: %s", session.id, exc
            )
            reason = EndReason.DUMP_ERROR
            writer.drop_buffered()
        self.metrics.dump_raw.inc(writer.raw_bytes - before_raw)
        self.metrics.dump_compressed.inc(writer.compressed_bytes - before_compressed)
        session.ending = (reason, code, utcnow())
        if not await self._store(session):
            # The dump stays where it is (live dir or store) and the record keeps its live
            # state: the sweeper retries, and after a restart crash recovery links it.
            self.unrecorded[session.id] = session
            log.error(
                "session %s: finished, but not recorded yet; retried every %.1f s",
                session.id,
                self.config.metadata.retry_interval_s,
            )

    async def _store(self, session: Session) -> bool:
        """Hand a finished session's dump to the store and write its final record.

        False when either could not be done now; calling it again continues where it
        stopped (the dump is handed over once, the summary computed once).
        """
        assert session.ending is not None
        reason, code, ended = session.ending
        writer = session.writer
        if not session.put_done:
            key = dump_key(session.id, session.started_at, self.config.storage.prefix)
            try:
                if await asyncio.to_thread(writer.path.exists):
                    session.stored = await self.dumps.put(key, writer.path)
            except (OSError, RtcstatsError) as exc:
                self.metrics.store_errors.labels(self.dumps.name).inc()
                log.error("session %s: dump could not be stored yet: %r", session.id, exc)
                return False
            session.put_done = True
        stored = session.stored
        if stored is not None and session.quality is None:
            async with self._summaries:
                session.quality = await quality_fields(self.dumps, stored.key, self.config.quality)
        fields = {
            **self._base_fields(session),
            "state": SessionState.STORED.value,
            "ended_at": ended,
            "updated_at": utcnow(),
            "duration_s": round((ended - session.started_at).total_seconds(), 3),
            "messages": session.messages,
            "bytes_received": session.bytes_received,
            "dropped_messages": session.dropped,
            "connections": session.connections,
            "last_seq": session.last_seq or None,
            "close_code": code,
            "end_reason": reason.value,
            "dump_key": stored.key if stored else None,
            "dump_bytes": stored.size if stored else None,
            "dump_raw_bytes": writer.raw_bytes,
            **(session.quality or {}),
        }
        if not await self._write_final(session.id, fields):
            return False
        session.quality = None  # in the record now; nothing more to keep in memory
        session.state = SessionState.STORED
        self.metrics.finished.labels(reason.value).inc()
        duration = fields["duration_s"]
        log.info(
            "session %s finished: %s (code %d), %d messages, %d bytes in, dump %s (%d bytes)",
            session.id,
            reason.value,
            code,
            session.messages,
            session.bytes_received,
            stored.key if stored else "(none)",
            stored.size if stored else 0,
            extra={
                LOG_FIELDS: {
                    "event": "session_end",
                    "session_id": session.id,
                    "client_session_id": session.client_session_id,
                    "conference_id": session.fields.get("conference_id"),
                    "user_id": session.fields.get("user_id"),
                    "app": session.fields.get("app"),
                    "dialect": session.dialect,
                    "end_reason": reason.value,
                    "close_code": code,
                    "duration_s": duration,
                    "messages": session.messages,
                    "bytes_received": session.bytes_received,
                    "dropped_messages": session.dropped,
                    "connections": session.connections,
                    "dump_key": stored.key if stored else None,
                    "dump_bytes": stored.size if stored else None,
                    "dump_raw_bytes": writer.raw_bytes,
                }
            },
        )
        if stored is not None:  # nothing stored: no viewer link, nothing to forward
            for hook in self.on_stored:
                await hook(session.id)
        return True

    async def _write_final(self, session_id: str, fields: dict[str, Any]) -> bool:
        """The record that ends a session, or, if the store refuses it (too large, a
        value it cannot hold), the record without its quality summary: a session must
        never stay live in its record while its dump is stored. False: not written."""
        attempts = [fields]
        for attempt in attempts:
            try:
                await self.records.upsert(session_id, attempt)
                return True
            except Exception as exc:  # any refusal: the driver's, SQLite's, a full disk
                self.metrics.store_errors.labels(self.records.name).inc()
                log.error("session %s: record write failed: %r", session_id, exc)
                if attempt is fields and "quality" in fields:
                    attempts.append(essential_fields(fields, f"the store refused it: {exc!r}"))
        return False

    async def _write_live(self, session: Session, fields: dict[str, Any]) -> None:
        """A record write while the session streams; one that fails is not retried: the
        final write carries every field again (and creates the record if need be)."""
        try:
            await self.records.upsert(session.id, fields)
        except Exception as exc:  # the session goes on; its end is what must be stored
            self.metrics.store_errors.labels(self.records.name).inc()
            log.error("session %s: record update failed: %r", session.id, exc)

    async def _retry_unrecorded(self) -> None:
        """One round over the finished sessions still waiting for their record; stops
        at the first that still fails (the store or disk is still away for all)."""
        for session in list(self.unrecorded.values()):
            if not await self._store(session):
                return
            del self.unrecorded[session.id]
            log.info("session %s: recorded after a retry", session.id)

    async def _let_handler_catch_up(self, session: Session) -> None:
        """Before the server closes a socket, let its handler store what it has read.

        Closing while the handler is busy makes aiohttp discard the messages already
        queued on that socket; once the handler waits in ``receive`` again, the queue
        is empty. Bounded: a client that keeps sending does not hold up the drain.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(2.0, self.config.server.shutdown_grace_s / 4)
        # Polled, not signalled: what we wait for is the handler *suspended* in receive,
        # and receive returns without suspending while messages are queued, so an
        # Event set before it would wake us too early.
        while not session.receiving and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    # -- what time decides ---------------------------------------------------------------

    async def sweep(self) -> None:
        now = self._loop_time()
        flush_after = self.config.dumps.flush_interval_s
        idle_after = self.config.ingest.idle_timeout_s
        grace = self.config.ingest.resume_grace_s
        streaming = detached = 0
        for session in list(self.sessions.values()):
            try:
                if session.state is SessionState.DETACHED:
                    detached += 1
                    if now - session.detached_at >= grace:
                        code = session.close_code or ABNORMAL_CLOSURE
                        await self.finish(session, EndReason.RESUME_EXPIRED, code)
                    continue
                if session.state is not SessionState.STREAMING:
                    continue
                streaming += 1
                if now - session.last_activity >= idle_after:
                    await self.finish(session, EndReason.IDLE_TIMEOUT, 1000)
                elif session.dirty_since and now - session.dirty_since >= flush_after:
                    await self.flush(session)
            except (OSError, RtcstatsError) as exc:
                log.error("session %s: sweep failed: %r", session.id, exc)
        if self.unrecorded and now >= self._retry_at:
            self._retry_at = now + self.config.metadata.retry_interval_s
            await self._retry_unrecorded()
        self.metrics.live.labels(SessionState.STREAMING.value).set(streaming)
        self.metrics.live.labels(SessionState.DETACHED.value).set(detached)
        self.metrics.live.labels(SessionState.FINISHING.value).set(len(self.unrecorded))

    async def _sweep_forever(self) -> None:
        period = min(1.0, self.config.dumps.flush_interval_s / 2)
        while True:
            await asyncio.sleep(period)
            try:
                await self.sweep()
            except Exception:
                log.exception("session sweep failed; retrying next period")

    # -- crash recovery -------------------------------------------------------------------

    async def _recover_later(self) -> None:
        while True:
            await asyncio.sleep(self.config.metadata.retry_interval_s)
            try:
                await self.recover()
                return
            except StoreUnavailable:
                continue

    async def recover(self) -> None:
        """Finish what a crash of this node left live: the dump up to its last whole
        frame, a close line, the record marked ``recovered``.

        A record whose live dump is gone may belong to a session that was finished and
        stored but whose final record write failed (a full disk, a store refusing it):
        its dump is looked up where it was stored, so it is linked, never orphaned.
        StoreUnavailable when some record could not be finished now (retried later).
        """
        failed = 0
        for record in await self.records.unfinished(self.node_id):
            if record["id"] in self.sessions or record["id"] in self.unrecorded:
                continue  # ours now (a recovery postponed past the first sessions)
            try:
                await self._recover_one(record)
            except Exception as exc:  # a full disk, a store refusing it: retried later
                failed += 1
                self.metrics.store_errors.labels(self.records.name).inc()
                log.error("session %s: recovery failed, retried later: %r", record["id"], exc)
        if failed:
            raise StoreUnavailable(f"{failed} unfinished sessions could not be recovered yet")

    async def _recover_one(self, record: dict[str, Any]) -> None:
        session_id = record["id"]
        path = self.live_dir / f"{session_id}.rtcstats.zst"
        key = dump_key(session_id, record["started_at"], self.config.storage.prefix)
        fields: dict[str, Any] = {
            "state": SessionState.STORED.value,
            "end_reason": EndReason.RECOVERED.value,
            "close_code": ABNORMAL_CLOSURE,
            "updated_at": utcnow(),
        }
        stored: StoredDump | None = None
        if await asyncio.to_thread(path.exists):
            lines, raw, last_write = await asyncio.to_thread(
                repair_live_dump, path, self.config.dumps.zstd_level, ABNORMAL_CLOSURE
            )
            stored = await self.dumps.put(key, path)
            ended = datetime.fromtimestamp(last_write, UTC)
            fields.update(
                {
                    "ended_at": ended,
                    "duration_s": round((ended - record["started_at"]).total_seconds(), 3),
                    "messages": max(lines - 3, 0),
                    "dump_raw_bytes": raw,
                }
            )
        else:
            fields["ended_at"] = record.get("updated_at") or utcnow()
            size = await stored_size(self.dumps, key)
            if size is not None:
                stored = StoredDump(key, size)
                log.warning("session %s: its stored dump had no record; linked", session_id)
        if stored is not None:
            fields.update({"dump_key": stored.key, "dump_bytes": stored.size})
        if not await self._write_final(session_id, fields):
            raise StoreUnavailable(f"session {session_id}: record not written")
        self.metrics.finished.labels(EndReason.RECOVERED.value).inc()
        log.warning("session %s recovered after a crash", session_id)
        if stored is not None:
            for hook in self.on_stored:
                await hook(session_id)


async def stored_size(dumps: DumpStore, key: str) -> int | None:
    """The size of the dump stored under ``key``, or None when there is none.

    Read through rather than asked: every store can read, and this runs only for the
    rare record a crash left without its dump.
    """
    size = 0
    try:
        async for chunk in dumps.read(key):
            size += len(chunk)
    except NotFound:
        return None
    return size


def _holder(token: ClientToken | None) -> tuple[tuple[str, str], ...] | None:
    return token.holder if token is not None else None
