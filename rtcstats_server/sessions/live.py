"""Live sessions: connect or resume, append, flush and acknowledge, detach, finish.

``SessionManager`` owns every session a connection feeds (``state.py`` has their
life). It creates or resumes them on connect, appends their events to the dump,
flushes and has durable seqs acknowledged, detaches them when a resumable client
drops, and finishes them: the close line and last frame, then the one finish path
(``finish.py``). A sweeper task does what time decides: periodic flushes, idle
timeouts, expired resumes, and finishes that stopped midway. At start, crash
recovery (``recovery.py``) finishes what a previous run left behind.

The manager never touches a socket or a dialect decoder: the ingest handler hands it
what the decoder said (``Client``, dump lines, identities) and a ``Connection`` per
socket, through which the manager asks for acknowledgements and closes.

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
import socket as socket_module
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtcstats_server.config import Config
from rtcstats_server.dialects.base import ClientToken, DumpLine, Handshake
from rtcstats_server.dumps.layout import close_line, header_lines
from rtcstats_server.dumps.writer import DumpWriter
from rtcstats_server.exceptions import HandshakeRefused, RtcstatsError
from rtcstats_server.files import create_once
from rtcstats_server.logs import LOG_FIELDS
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.record import EndReason, SessionState, utcnow
from rtcstats_server.metrics import Metrics
from rtcstats_server.sessions.connection import ABNORMAL_CLOSURE, CloseRequest, Connection
from rtcstats_server.sessions.fields import opening_fields
from rtcstats_server.sessions.finish import Finisher
from rtcstats_server.sessions.recovery import Recovery
from rtcstats_server.sessions.segments import (
    FINAL_REASONS,
    HOLDER_FIELD,
    Cluster,
    Joined,
    holder_digest,
    new_segment_id,
    segment_path,
)
from rtcstats_server.sessions.state import OPEN_STATES, Ending, Session, State
from rtcstats_server.storage.base import DumpStore

log = logging.getLogger(__name__)

#: A seq further than this past the last stored one is refused: no real client gets
#: there (one that was offline long keeps counting, but not by a million entries),
#: and storing it would make the real client's next entries look like duplicates.
MAX_SEQ_STEP = 1_000_000


@dataclass(frozen=True, slots=True)
class Client:
    """What the session layer needs to know of a connection's dialect; the handler
    reads it off the decoder (``ingest.handler.client_of``)."""

    dialect: str
    client_session_id: str | None
    #: Durable seqs are acknowledged to the client (3.1 ``sn``).
    sends_acks: bool
    #: The client reconnects and resumes its session after a dropped socket.
    resumable: bool
    is_reconnect: bool
    file_format: int | None
    #: Dump times are ms since the previous event: so is the close line's.
    relative_time: bool


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
    # the workers of one collector start together: whoever links first names them all
    create_once(marker, node_id + "\n")
    return marker.read_text(encoding="ascii").strip()


class LiveSession(Session):
    """A session that connections feed: its dump writer and its stream's counts."""

    __slots__ = (
        "bytes_received",
        "client",
        "client_session_id",
        "close_code",
        "connection",
        "connections",
        "detached_at",
        "dirty_since",
        "dropped",
        "fields",
        "finished",
        "first_seq",
        "handshake",
        "holder",
        "identified",
        "joined",
        "last_activity",
        "last_seq",
        "lines",
        "messages",
        "pinned",
        "recorded",
        "segment_id",
        "unacked",
        "writer",
    )

    def __init__(
        self,
        session_id: str,
        client: Client,
        handshake: Handshake,
        writer: DumpWriter,
        token: ClientToken | None = None,
    ):
        super().__init__(session_id, utcnow())
        self.client = client
        self.handshake = handshake
        self.client_session_id = client.client_session_id
        self.writer = writer
        #: The connection that feeds it now (None: detached, or finishing).
        self.connection: Connection | None = None
        self.fields: dict[str, Any] = {}
        self.last_seq = 0
        self.unacked = 0
        self.lines = 0
        self.messages = 0
        self.bytes_received = 0
        self.dropped = 0
        self.connections = 0
        #: The record exists (the first event created it).
        self.recorded = False
        #: Loop time of the last message (the handler sets it), of the oldest line not
        #: yet flushed (0: none), and of the detach.
        self.last_activity = 0.0
        self.dirty_since = 0.0
        self.detached_at = 0.0
        #: The code its last connection closed with (written if the resume never comes).
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
        #: In a cluster (``sessions/segments.py``): the segment this connection writes,
        #: and the first seq it holds (0: none yet).
        self.segment_id = ""
        self.first_seq = 0
        #: The segment joined a session another connection started.
        self.joined = False


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
        self.sessions: dict[str, LiveSession] = {}
        self.by_client: dict[str, LiveSession] = {}
        #: THE finish, shared with crash recovery and uploads; its hooks are added by
        #: the app (viewer, forwarding, analysis).
        self.finisher = Finisher(config, dumps, records, metrics)
        self.recovery = Recovery(config, records, dumps, self.finisher, metrics, self.owns)
        #: Several collectors share the sessions (``server.cluster``): segments.
        self.cluster = (
            Cluster(config, dumps, self.finisher, metrics, self.owns)
            if config.server.cluster
            else None
        )
        self._retry_at = 0.0
        self._sweeper: asyncio.Task[None] | None = None
        #: Finishes under way (a session leaves ``sessions`` before it is stored):
        #: the drain waits for these too.
        self._finishing: set[asyncio.Future[None]] = set()
        self._loop_time = time.monotonic
        self.accepting = True
        #: Read for every message: kept here, a config attribute chain is two lookups.
        self._flush_bytes = config.dumps.flush_bytes
        self._ack_every = config.ingest.ack_every_entries

    @property
    def unrecorded(self) -> dict[str, Session]:
        """Finished sessions whose finish stopped midway (a store or disk away)."""
        return self.finisher.waiting

    def owns(self, session_id: str) -> bool:
        """The session is this process's now (live, or its finish being retried)."""
        return session_id in self.sessions or session_id in self.finisher.waiting

    # -- start and stop -------------------------------------------------------------

    async def start(self) -> None:
        if not self.node_id:
            self.node_id = await asyncio.to_thread(default_node_id, self.config.server.data_dir)
        await asyncio.to_thread(self.live_dir.mkdir, parents=True, exist_ok=True)
        await self.recovery.start(self.node_id)
        if self.cluster is not None:
            await self.cluster.start(self.node_id)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="session-sweeper")

    async def stop(self) -> None:
        """Drain: every live session is finished and stored before we return."""
        self.accepting = False
        await self.recovery.stop()
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
        if self._finishing:  # begun before the drain (a client's close): let them end
            await asyncio.gather(*self._finishing, return_exceptions=True)
        await self.finisher.retry()
        if self.cluster is not None:
            await self.cluster.stop()
        for waiting in self.finisher.waiting.values():
            if waiting.state is State.STORED:
                log.error(
                    "session %s: stored, but its analysis and forwarding could not be queued "
                    "at shutdown (the job queue did not answer)",
                    waiting.id,
                )
            else:
                log.error(
                    "session %s: not recorded at shutdown; linked at the next start", waiting.id
                )

    # -- connect, resume ------------------------------------------------------------

    async def check_resume(self, client: Client, token: ClientToken | None) -> None:
        """Refuse (403, before the upgrade) a resume of a session someone else holds:
        one this process holds live, or in a cluster one whose live segments are on
        other collectors (or other workers of this one) or have all ended.

        Without tokens every holder is anonymous, so anyone who knows a live
        statsSessionId may resume it: that is the trust model of tokenless deployments.
        """
        holder = _holder(token)
        session = self._resumable(client)
        if session is not None:
            if session.holder != holder:
                raise _not_owner()
            return
        client_id = client.client_session_id
        if (
            self.cluster is not None
            and self.config.auth.has_keys  # else every client is anonymous: no store read
            and client.resumable
            and client.is_reconnect
            and client_id is not None
            and await self.cluster.refuses_resume(client_id, client.dialect, holder)
        ):
            raise _not_owner()

    async def connect(
        self,
        client: Client,
        handshake: Handshake,
        connection: Connection,
        token: ClientToken | None = None,
    ) -> tuple[LiveSession, int]:
        """The session ``connection`` feeds, and the last seq it holds (durable: the
        handler opens with it, e.g. 3.1 ``sn``)."""
        session = self._resumable(client)
        if session is not None and session.holder != _holder(token):
            session = None  # checked before the upgrade; changed hands meanwhile: a new one
        if session is not None:
            old, session.connection = session.connection, None
            if old is not None:
                old.close(CloseRequest(1000, "resumed on a new connection", counted=False))
                await old.wait_closed()
            try:
                await self.flush(session)  # what the opening names must be durable
            except OSError as exc:
                log.error("session %s: dump write failed at resume: %s", session.id, exc)
                await self.finish(session, EndReason.DUMP_ERROR, 1011)
                session = None
        if session is not None and self.cluster is not None and not session.recorded:
            session = await self._instead_of_empty(session, client, handshake, token)
        if session is None and self.cluster is not None:
            session = await self._join(client, handshake, token)
        if session is not None and session.live:
            session.client = client
            session.resume()
            if session.recorded and self.cluster is None:
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
            session = self._new_session(client, handshake, token)
        session.connection = connection
        session.connections += 1
        session.last_activity = self._loop_time()
        connection.durable_seq = connection.told_seq = session.last_seq
        return session, session.last_seq

    async def _instead_of_empty(
        self,
        session: LiveSession,
        client: Client,
        handshake: Handshake,
        token: ClientToken | None,
    ) -> LiveSession:
        """The session a resume continues when the one held here never held an event.

        Its client gave that socket up before sending anything (it stayed half-open
        here), streamed on another collector, and comes back: the cluster's session
        has what it sent, and resuming the empty one here would answer ``sn`` 0 and
        start a second record with the client's later seqs. Joined, the empty one
        ends (without an event it leaves no record); no session elsewhere: it goes on.
        """
        joined = await self._join(client, handshake, token)
        if joined is None:
            return session
        log.info("session %s: held no event, the resume joins %s", session.id, joined.id)
        await self.finish(session, EndReason.RESUME_EXPIRED, 1000)
        return joined

    def holds(self, client: Client) -> bool:
        """This process has the live session ``client`` resumes (under ``serve
        --workers N`` another worker may have it: http/relay.py asks them)."""
        return self._resumable(client) is not None

    def holds_resumable(self, client_session_id: str, dialect: str) -> bool:
        """A live session of ``dialect`` that ``client_session_id``'s resumes go to."""
        session = self.by_client.get(client_session_id)
        return session is not None and session.client.dialect == dialect and session.live

    def _resumable(self, client: Client) -> LiveSession | None:
        client_id = client.client_session_id
        if not client.resumable or not client.is_reconnect or client_id is None:
            return None
        session = self.by_client.get(client_id)
        if session is None or session.client.dialect != client.dialect or not session.live:
            return None
        return session

    async def _join(
        self, client: Client, handshake: Handshake, token: ClientToken | None
    ) -> LiveSession | None:
        """A resume of a session another collector (or an earlier connection here)
        fed: a new segment of it (``sessions/segments.py``)."""
        client_id = client.client_session_id
        if self.cluster is None or not client.resumable or not client.is_reconnect:
            return None
        if client_id is None:
            return None
        joined = await self.cluster.join(client_id, client.dialect, _holder(token))
        if joined is None:
            return None
        session = self._joined_session(client, handshake, token, joined)
        self.sessions[session.id] = session
        self.by_client[client_id] = session
        return session

    def _joined_session(
        self, client: Client, handshake: Handshake, token: ClientToken | None, joined: Joined
    ) -> LiveSession:
        writer = DumpWriter(
            segment_path(self.live_dir, joined.session_id, joined.segment_id),
            self.config.dumps.zstd_level,
            self.config.dumps.fsync,
        )
        session = LiveSession(joined.session_id, client, handshake, writer, token)
        session.started_at = joined.started_at
        session.segment_id = joined.segment_id
        session.joined = True
        session.last_seq = joined.sn
        session.recorded = True  # the first segment's collector made the record
        session.last_activity = self._loop_time()  # the sweeper may look before connect ends
        session.identified = True  # and its first identity named the session
        return session

    def _new_session(
        self, client: Client, handshake: Handshake, token: ClientToken | None = None
    ) -> LiveSession:
        session_id = uuid.uuid4().hex
        segment_id = new_segment_id() if self.cluster is not None else ""
        path = (
            segment_path(self.live_dir, session_id, segment_id)
            if segment_id
            else self.live_dir / f"{session_id}.rtcstats.zst"
        )
        writer = DumpWriter(path, self.config.dumps.zstd_level, self.config.dumps.fsync)
        session = LiveSession(session_id, client, handshake, writer, token)
        session.segment_id = segment_id
        meta = {
            "fileFormat": client.file_format,
            "clientProtocol": client.dialect,
            "url": handshake.path,
            "origin": handshake.origin or None,
            "userAgent": handshake.user_agent or None,
            "startTime": round(session.started_at.timestamp() * 1000),
            "remoteAddresses": [handshake.remote] if handshake.remote else None,
            "sessionId": session_id,
            "statsSessionId": client.client_session_id,
            "collector": "rtcstats-collector",
            "location": handshake.location,  # looked up before masking (geo_annotation.py)
        }
        for line in header_lines(meta):
            writer.append(line)
        self.sessions[session_id] = session
        if client.client_session_id is not None:
            # A fresh connection reusing a live session's id gets a session of its own,
            # but the id keeps leading to the first: its client's resumes must land there.
            self.by_client.setdefault(client.client_session_id, session)
        return session

    # -- events ---------------------------------------------------------------------

    async def accept(self, session: LiveSession, line: DumpLine) -> None:
        """Append one event; flush when a size or acknowledgement threshold is met."""
        if self.append(session, line):
            await self.settle(session)

    def append(self, session: LiveSession, line: DumpLine) -> bool:
        """The synchronous part of ``accept``: True when ``settle`` must follow.

        Split so the ingest loop pays for a coroutine only on the few messages that
        create the record or fill a frame, not on every message.
        """
        if session.state not in OPEN_STATES:
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
            if not session.first_seq:
                session.first_seq = seq
        writer = session.writer
        if session.dirty_since == 0.0:
            session.dirty_since = self._loop_time()
        writer.append(line.text)
        session.lines += 1
        session.unacked += 1
        return not session.recorded or self._flush_due(session)

    async def settle(self, session: LiveSession) -> None:
        """Create the record (after the append: a racing finish still sees the line)
        and flush when a size or acknowledgement threshold is met."""
        if not session.recorded:
            await self._create_record(session)
        if self._flush_due(session):
            await self.flush(session)

    def settle_now(self, session: LiveSession) -> bool:
        """``settle`` in the caller's step when it has nothing to wait for (the record
        exists; the frame due, if any, is written on the loop): True when done, False
        when ``settle`` must be awaited. Raises ``OSError`` as the write does (the
        lines stay buffered).

        Each ``ack_every_entries``-th 3.1 entry is such a flush: done in place, it
        costs no task, no pause and resume of the socket and no trip around the loop.
        """
        if not session.recorded:
            return False
        if not self._flush_due(session):
            return True
        writer = session.writer
        if not writer.writes_inline():
            return False
        last = session.last_seq
        before_raw, before_compressed = writer.raw_bytes, writer.compressed_bytes
        writer.write_frame()
        self._flushed(session, last, before_raw, before_compressed)
        return True

    def _flush_due(self, session: LiveSession) -> bool:
        return session.writer.buffered_bytes >= self._flush_bytes or (
            session.client.sends_acks and session.unacked >= self._ack_every
        )

    def name_client(self, session: LiveSession, client_id: str) -> None:
        """A pusher named its session in a message (not in the URL)."""
        if session.client_session_id is None:
            session.client_session_id = client_id
            self.by_client.setdefault(client_id, session)

    async def _create_record(self, session: LiveSession) -> None:
        session.recorded = True
        await self._write_live(
            session, {**self._opening_fields(session), "state": SessionState.STREAMING.value}
        )
        if self.cluster is not None:
            await self.cluster.register(session.id, session.segment_id, session.holder)
        log.info(
            "session %s started: client %s, dialect %s, url %s, from %s",
            session.id,
            session.client_session_id,
            session.client.dialect,
            session.handshake.path,
            session.handshake.remote,
            extra={
                LOG_FIELDS: {
                    "event": "session_start",
                    "session_id": session.id,
                    "client_session_id": session.client_session_id,
                    "dialect": session.client.dialect,
                    "url": session.handshake.path,
                    "node_id": self.node_id,
                }
            },
        )

    def _opening_fields(self, session: LiveSession) -> dict[str, Any]:
        return opening_fields(
            client_session_id=session.client_session_id,
            dialect=session.client.dialect,
            handshake=session.handshake,
            node_id=self.node_id,
            started_at=session.started_at,
            known=session.fields,
        )

    async def identity(self, session: LiveSession, fields: dict[str, str]) -> None:
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

    async def flush(self, session: LiveSession) -> None:
        """Make everything appended durable, then have the connection acknowledge it."""
        last = session.last_seq
        writer = session.writer
        before_raw, before_compressed = writer.raw_bytes, writer.compressed_bytes
        await writer.flush()
        self._flushed(session, last, before_raw, before_compressed)

    def _flushed(
        self, session: LiveSession, last: int, before_raw: int, before_compressed: int
    ) -> None:
        """After a frame is written: count it, and have the connection acknowledge
        ``last``, the newest seq it holds."""
        writer = session.writer
        self.metrics.dump_raw.inc(writer.raw_bytes - before_raw)
        self.metrics.dump_compressed.inc(writer.compressed_bytes - before_compressed)
        session.dirty_since = 0.0
        session.unacked = 0
        connection = session.connection
        if connection is not None and session.client.sends_acks:
            connection.acknowledge(last)

    async def _write_live(self, session: LiveSession, fields: dict[str, Any]) -> None:
        """A record write while the session streams; one that fails is not retried: the
        final write carries every field again (and creates the record if need be)."""
        try:
            await self.records.upsert(session.id, fields)
        except Exception as exc:  # the session goes on; its end is what must be stored
            self.metrics.store_errors.labels(self.records.name).inc()
            log.error("session %s: record update failed: %r", session.id, exc)

    # -- disconnect, finish -----------------------------------------------------------

    async def disconnected(
        self, session: LiveSession, connection: Connection, code: int | None, final: bool
    ) -> None:
        """The handler's socket is gone: detach a resumable session, finish the rest.

        ``final``: the client said it will not come back (a close message, or a close
        code after which its dialect does not reconnect).
        """
        if session.connection is not connection:
            return  # taken over by a resume, or finished by the server
        session.connection = None
        if not session.live:
            return
        code = ABNORMAL_CLOSURE if code is None else code
        session.close_code = code
        grace = self.config.ingest.resume_grace_s
        if self.cluster is not None and session.client.resumable and not final and grace > 0:
            # The client resumes on any collector: this segment ends now.
            await self.finish(session, EndReason.RESUME_EXPIRED, code)
            return
        if session.client.resumable and not final and grace > 0 and self.accepting:
            session.detach()
            session.detached_at = self._loop_time()
            with contextlib.suppress(OSError):  # kept buffered; retried, or stored at finish
                await self.flush(session)
            if session.recorded:
                await self._write_live(
                    session, {"state": SessionState.DETACHED.value, "updated_at": utcnow()}
                )
            return
        reason = EndReason.CONFERENCE_LEFT if code == 3001 else EndReason.CLIENT_CLOSED
        await self.finish(session, reason, code)

    async def finish(self, session: LiveSession, reason: EndReason, code: int) -> None:
        """Close the connection, write the close line, hand over to THE finish:
        exactly once per session."""
        if session.finished is not None:
            await asyncio.shield(session.finished)
            return
        session.finished = asyncio.get_running_loop().create_future()
        self._finishing.add(session.finished)
        session.finished.add_done_callback(self._finishing.discard)
        try:
            await self._finish(session, reason, code)
            session.finished.set_result(None)
        except BaseException as exc:
            session.finished.set_exception(exc)
            session.finished.exception()  # retrieved: callers that wait re-raise it
            raise

    async def _finish(self, session: LiveSession, reason: EndReason, code: int) -> None:
        session.finish()
        connection, session.connection = session.connection, None
        if connection is not None:
            catch_up = reason is EndReason.SHUTDOWN
            connection.close(CloseRequest(code, reason.value, catch_up=catch_up))
            await connection.wait_closed()
        if self.sessions.get(session.id) is session:  # a cluster may have joined it anew
            del self.sessions[session.id]
        if self.by_client.get(session.client_session_id or "") is session:
            del self.by_client[session.client_session_id or ""]
        if self.cluster is not None:
            await self._end_segment(session, reason, code)
            return
        writer = session.writer
        if session.lines == 0:
            session.discard()
            await asyncio.to_thread(writer.discard)
            return
        writer.append(self._close_line(session, code))
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
        facts = {
            **self._opening_fields(session),
            "messages": session.messages,
            "bytes_received": session.bytes_received,
            "dropped_messages": session.dropped,
            "connections": session.connections,
            "last_seq": session.last_seq or None,
            "dump_raw_bytes": writer.raw_bytes,
        }
        del facts["started_at"], facts["updated_at"]  # the finish writes those
        session.seal(Ending(reason, code, utcnow(), writer.path, facts))
        await self.finisher.finish(session)

    async def _end_segment(self, session: LiveSession, reason: EndReason, code: int) -> None:
        """In a cluster: this connection's segment is whole; the session ends when the
        cluster says it is final (``sessions/segments.py``), merged by whichever
        collector finishes it. The live object is done with here either way."""
        assert self.cluster is not None
        writer = session.writer
        before_raw, before_compressed = writer.raw_bytes, writer.compressed_bytes
        try:
            await writer.close()
        except OSError as exc:
            log.error(
                "session %s: segment write failed, keeping what was written: %s", session.id, exc
            )
            writer.drop_buffered()
        self.metrics.dump_raw.inc(writer.raw_bytes - before_raw)
        self.metrics.dump_compressed.inc(writer.compressed_bytes - before_compressed)
        session.discard()  # as a live session of this process: the cluster finishes it
        if not session.recorded:  # never held an event: no record names it
            await asyncio.to_thread(writer.discard)
            return
        final = reason in FINAL_REASONS or not session.client.resumable
        facts: dict[str, Any] = {
            "first": not session.joined,
            "seq_from": session.first_seq or None,
            "seq_to": session.last_seq or None,
            "lines": session.lines,
            "raw_bytes": writer.raw_bytes,
            "messages": session.messages,
            "bytes_received": session.bytes_received,
            "dropped_messages": session.dropped,
            "connections": session.connections,
        }
        if not session.joined:  # also when its registration failed: the end upserts it
            facts[HOLDER_FIELD] = holder_digest(session.holder)
        path = writer.path if session.lines else None
        log.info(
            "session %s: segment %s ended on %s (%s, code %s, %d lines, seq %s-%s, final %s)",
            session.id,
            session.segment_id,
            self.node_id,
            reason.value,
            code,
            session.lines,
            session.first_seq,
            session.last_seq,
            final,
        )
        if path is None:
            await asyncio.to_thread(writer.discard)
        await self.cluster.end(session.id, session.segment_id, path, facts, reason, code, final)

    def _close_line(self, session: LiveSession, code: int) -> str:
        """The close line in the dump's time convention: epoch ms, or for relative
        dialects the ms since the last message (``dumps/layout.close_line``)."""
        now_ms = time.time() * 1000
        last_ms = now_ms - (self._loop_time() - session.last_activity) * 1000
        return close_line(code, now_ms, relative=session.client.relative_time, last_ms=last_ms)

    # -- what time decides ---------------------------------------------------------------

    async def sweep(self) -> None:
        now = self._loop_time()
        flush_after = self.config.dumps.flush_interval_s
        idle_after = self.config.ingest.idle_timeout_s
        grace = self.config.ingest.resume_grace_s
        streaming = detached = 0
        for session in list(self.sessions.values()):
            try:
                if session.state is State.DETACHED:
                    detached += 1
                    if now - session.detached_at >= grace:
                        code = session.close_code or ABNORMAL_CLOSURE
                        await self.finish(session, EndReason.RESUME_EXPIRED, code)
                    continue
                if session.state is not State.STREAMING:
                    continue
                streaming += 1
                if now - session.last_activity >= idle_after:
                    await self.finish(session, EndReason.IDLE_TIMEOUT, 1000)
                elif session.dirty_since and now - session.dirty_since >= flush_after:
                    await self.flush(session)
            except (OSError, RtcstatsError) as exc:
                log.error("session %s: sweep failed: %r", session.id, exc)
        if self.finisher.waiting and now >= self._retry_at:
            self._retry_at = now + self.config.metadata.retry_interval_s
            await self.finisher.retry()
        self.metrics.live.labels(SessionState.STREAMING.value).set(streaming)
        self.metrics.live.labels(SessionState.DETACHED.value).set(detached)
        self.metrics.live.labels(SessionState.FINISHING.value).set(len(self.finisher.waiting))

    async def _sweep_forever(self) -> None:
        period = min(1.0, self.config.dumps.flush_interval_s / 2)
        while True:
            await asyncio.sleep(period)
            try:
                await self.sweep()
            except Exception:
                log.exception("session sweep failed; retrying next period")


def _holder(token: ClientToken | None) -> tuple[tuple[str, str], ...] | None:
    return token.holder if token is not None else None


def _not_owner() -> HandshakeRefused:
    return HandshakeRefused(
        403, "resume_not_owner", "this session is streamed by another token holder"
    )
