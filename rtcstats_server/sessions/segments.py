"""Segments: one session fed by connections to several collectors (``server.cluster``).

Behind a balancer without stickiness a resuming client lands on any collector. Each
connection then writes its own *segment* (our dump layout, zstd frames; only the
first holds the dump's header) under ``<data_dir>/live``, and the shared store lists
the segments (``metadata/segments.py``). A resume on any collector joins the session
and answers ``sn`` from them: the highest seq of an ended segment, or 0 when none has
ended (the client then resends its buffer, and the merge drops by seq what was
already there).

When a segment ends, its file goes to the dump store under a ``segments/`` key (read
from its collector's outbox until it reaches the bucket) and its document says so.
A final end (the client said it is done) is finished at once by the collector that
saw it; any other end leaves a ``segments`` job in the shared queue (insert-only),
which whichever collector leases it checks again once ``resume_grace_s`` may have
passed. Either way one collector wins the claim, merges the segments in seq order
without duplicates into one dump and hands it to THE finish (``finish.py``), like any
other session. A collector killed mid-stream keeps its segments on disk; at its next
start they are cut to whole frames and ended like any other, and their sessions
finish with them (until then a live segment holds its session's finish back).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from rtcstats_server.config import Config
from rtcstats_server.dumps.codecs import iter_frames
from rtcstats_server.dumps.layout import close_line, is_session_close
from rtcstats_server.dumps.writer import FRAME_BYTES, DumpWriter
from rtcstats_server.exceptions import NotFound
from rtcstats_server.metadata.factory import make_job_queue
from rtcstats_server.metadata.jobs import Job, JobQueue
from rtcstats_server.metadata.record import EndReason, SessionState
from rtcstats_server.metadata.segments import ENDED, LIVE, SegmentDirectory
from rtcstats_server.metrics import Metrics
from rtcstats_server.sessions.connection import ABNORMAL_CLOSURE
from rtcstats_server.sessions.fields import facts_of
from rtcstats_server.sessions.finish import Finisher
from rtcstats_server.sessions.state import Ending, Session, State
from rtcstats_server.storage.base import DumpStore

log = logging.getLogger(__name__)

#: The job queue's worker name for "finish this session once it is final".
FINISH_JOB = "segments"
SEGMENT_SUFFIX = ".segment.zst"
#: The field of a session's first segment that names its token holder (``holder_digest``).
HOLDER_FIELD = "holder_sha256"
#: End reasons after which the client never resumes: no grace to wait.
FINAL_REASONS = frozenset({EndReason.CLIENT_CLOSED, EndReason.CONFERENCE_LEFT})
_LEASE_S = 60.0
_POLL_S = 0.25


#: A token holder (``ClientToken.holder``), None for an anonymous client.
Holder = tuple[tuple[str, str], ...] | None


def holder_digest(holder: Holder) -> str | None:
    """What a session's first segment keeps of its token holder, for resumes on other
    collectors to compare with theirs: a digest, so the shared store does not gather
    the tokens' subjects and ids (the record keeps only what a token pins). Equal
    holders, equal digests: a holder's pairs come sorted. None: anonymous."""
    if holder is None:
        return None
    return hashlib.sha256(orjson.dumps(holder)).hexdigest()


def new_segment_id() -> str:
    return uuid.uuid4().hex[:16]


def segment_key(prefix: str, session_id: str, segment_id: str) -> str:
    """Outside the dated dump keys: ``session_id_of`` names no session for it."""
    key = f"segments/{session_id}/{segment_id}{SEGMENT_SUFFIX}"
    return f"{prefix.strip('/')}/{key}" if prefix.strip("/") else key


def segment_path(live_dir: Path, session_id: str, segment_id: str) -> Path:
    return live_dir / f"{session_id}.{segment_id}{SEGMENT_SUFFIX}"


@dataclass(frozen=True)
class Joined:
    """A live session of the cluster this collector now feeds with a new segment."""

    session_id: str
    segment_id: str
    started_at: datetime
    #: The highest seq the record knows stored (0: unknown).
    sn: int


@dataclass
class SegmentEnd:
    """What a segment's end tells the record (kept to retry while the store is away)."""

    session_id: str
    segment_id: str
    path: Path | None
    entry: dict[str, Any]
    final: bool
    at: float


def _seq_of(line: bytes) -> int | None:
    if not line.startswith(b"["):
        return None
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if type(entry) is list and len(entry) > 4 and type(entry[4]) is int:
        return entry[4]
    if is_session_close(entry):
        return -1
    return None


@dataclass
class Merged:
    lines: int
    raw_bytes: int
    last_seq: int
    duplicates: int


def merge_segments(parts: list[bytes], out: Path, level: int, close: str | None) -> Merged:
    """Whole frames of each part, in the order given (the first holds the header),
    into one dump at ``out``: a line whose seq is not above every seq before it is a
    duplicate and dropped; close lines (a recovered segment's) are dropped; ``close``
    ends the dump (None: a session still live). Blocking: call it from a worker thread.

    ``out`` is written anew: the writer appends frames, and a file an earlier merge of
    the session left there (a try that stopped before the dump store took it) would
    otherwise put a second copy, close line and all, behind this one."""
    out.unlink(missing_ok=True)
    writer = DumpWriter(out, level, fsync=True)
    seen = lines = duplicates = 0
    for data in parts:
        for content, _ in iter_frames([data]):
            for line in content.splitlines():
                seq = _seq_of(line) if len(parts) > 1 or line.startswith(b'["close"') else None
                if seq == -1:
                    continue
                if seq is not None:
                    if seq <= seen:
                        duplicates += 1
                        continue
                    seen = seq
                writer.append(line.decode("utf-8", "surrogateescape"))
                lines += 1
                if writer.buffered_bytes >= FRAME_BYTES:
                    writer.write_frame()
    if close is not None:
        writer.append(close)
        lines += 1
    writer.write_frame()
    return Merged(lines, writer.raw_bytes, seen, duplicates)


def repair_segment(path: Path) -> tuple[int, int, int, int]:
    """Cut a segment a crash left to its whole frames: (lines, raw bytes, first seq,
    last seq). Blocking."""
    data = path.read_bytes()
    good = lines = raw = first = last = 0
    for content, length in iter_frames([data]):
        good += length
        raw += len(content)
        for line in content.splitlines():
            lines += 1
            seq = _seq_of(line)
            if seq is not None and seq > 0:
                first = first or seq
                last = max(last, seq)
    if good != len(data):
        with path.open("r+b") as handle:
            handle.truncate(good)
    return lines, raw, first, last


class Cluster:
    """This collector's part in a cluster: joins, segment ends, and finishing
    whichever session is final (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        dumps: DumpStore,
        finisher: Finisher,
        metrics: Metrics,
        owns: Callable[[str], bool],
        directory: SegmentDirectory | None = None,
        queue: JobQueue | None = None,
    ) -> None:
        self.config = config
        self.dumps = dumps
        self.finisher = finisher
        self.metrics = metrics
        self.owns = owns
        self.directory = directory or SegmentDirectory.from_config(config.metadata)
        self.queue = queue or make_job_queue(config)
        self.node_id = ""
        #: Segment ends the store did not take yet; retried by the worker.
        self.pending: list[SegmentEnd] = []
        self._worker: asyncio.Task[None] | None = None
        self._finishing: set[asyncio.Task[None]] = set()
        #: Sessions this process is merging and finishing now.
        self._active: set[str] = set()
        self._clock = time.time

    async def start(self, node_id: str) -> None:
        self.node_id = node_id
        await self.directory.open()
        await self.queue.open()
        await self._recover_segments()
        self._worker = asyncio.create_task(self._work_forever(), name="segment-finisher")

    async def stop(self) -> None:
        """After the manager ended its segments: those ends are retried once more."""
        if self._worker is not None:
            worker, self._worker = self._worker, None
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self._finishing:
            await asyncio.gather(*self._finishing, return_exceptions=True)
        await self._retry_pending()
        for end in self.pending:
            log.error(
                "session %s: segment %s end not recorded at shutdown; its file stays for "
                "the next start",
                end.session_id,
                end.segment_id,
            )
        await self.queue.close()
        await self.directory.close()

    # -- segments of this collector -------------------------------------------------------

    async def join(
        self, client_session_id: str, dialect: str, holder: Holder = None
    ) -> Joined | None:
        """Join the newest live session of this client id with a new segment; None
        when there is none, or its first connection's token holder is another."""
        try:
            record = await self._resumable(client_session_id, dialect, holder)
            if record is None:
                return None
            segment_id = new_segment_id()
            entry = {"node": self.node_id, "state": LIVE, "opened_at": self._clock()}
            segments = await self.directory.join(record["_id"], segment_id, entry)
        except Exception as exc:  # the store is away: a session of its own instead
            log.error("client %s: resume lookup failed: %r", client_session_id, exc)
            return None
        if segments is None:
            return None
        sn = max(
            (int(s.get("seq_to") or 0) for s in segments if s.get("state") == ENDED),
            default=0,
        )
        started = record.get("started_at")
        if not isinstance(started, datetime):
            started = datetime.now(UTC)
        elif started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        log.info(
            "session %s joined on %s (segment %s, sn %d)",
            record["_id"],
            self.node_id,
            segment_id,
            sn,
        )
        return Joined(record["_id"], segment_id, started, sn)

    async def refuses_resume(self, client_session_id: str, dialect: str, holder: Holder) -> bool:
        """The client id has live sessions in the cluster and another token holder
        started each of them: the resume is refused before the upgrade, as one
        collector refuses a resume of a session it holds. False when the store does
        not answer (the join then finds nothing either: a session of its own)."""
        try:
            records = await self.directory.find_resumable(client_session_id, dialect)
            return bool(records) and await self._of_holder(records, holder) is None
        except Exception as exc:
            log.error("client %s: resume owner lookup failed: %r", client_session_id, exc)
            return False

    async def _resumable(
        self, client_session_id: str, dialect: str, holder: Holder
    ) -> dict[str, Any] | None:
        """The newest live session of this client id that this token holder started."""
        records = await self.directory.find_resumable(client_session_id, dialect)
        return await self._of_holder(records, holder)

    async def _of_holder(
        self, records: list[dict[str, Any]], holder: Holder
    ) -> dict[str, Any] | None:
        """The first of ``records`` (newest first) that this token holder started; one
        whose first segment is not known yet (its registration failed) is anyone's."""
        digest = holder_digest(holder)
        for record in records:
            segments = await self.directory.of_session(record["_id"])
            first = [s for s in segments if s.get("first")]
            if not first or first[0].get(HOLDER_FIELD) == digest:
                return record
            log.warning(
                "session %s: not resumed by another token holder (client %s)",
                record["_id"],
                record.get("client_session_id"),
            )
        return None

    async def register(self, session_id: str, segment_id: str, holder: Holder = None) -> None:
        """The session's first segment (its record has just been created), with who
        streams it: a resume elsewhere must come from the same token holder."""
        entry = {
            "node": self.node_id,
            "state": LIVE,
            "opened_at": self._clock(),
            "first": True,
            HOLDER_FIELD: holder_digest(holder),
        }
        try:
            await self.directory.register(session_id, segment_id, entry)
        except Exception as exc:
            log.error("session %s: first segment not registered: %r", session_id, exc)

    async def end(
        self,
        session_id: str,
        segment_id: str,
        path: Path | None,
        facts: Mapping[str, Any],
        reason: EndReason,
        code: int,
        final: bool,
    ) -> None:
        """A segment of this collector ended: its file into the dump store, the end into
        the record, a finish job into the queue (retried while the store is away)."""
        entry = {
            "node": self.node_id,
            "reason": reason.value,
            "close_code": code,
            "ended_at": self._clock(),
            **facts,
        }
        end = SegmentEnd(session_id, segment_id, path, entry, final, self._clock())
        if not await self._record_end(end):
            self.pending.append(end)

    async def _record_end(self, end: SegmentEnd) -> bool:
        try:
            if end.path is not None:
                key = segment_key(self.config.storage.prefix, end.session_id, end.segment_id)
                await self.dumps.put(key, end.path)
                await self.dumps.recorded(key)  # its upload starts now
                end.entry["key"] = key
                end.path = None
            await self.directory.end(end.session_id, end.segment_id, end.entry, final=end.final)
            # Insert-only (never re-armed: an update racing the lease holder's could be
            # lost on FerretDB): the job checks again when the grace may have passed.
            await self.queue.enqueue(end.session_id, FINISH_JOB, self._clock())
        except Exception as exc:
            log.error(
                "session %s: segment %s end not recorded yet: %r",
                end.session_id,
                end.segment_id,
                exc,
            )
            return False
        if end.final:  # the client is done: no grace to wait for, finish it now
            task = asyncio.create_task(self._finish_now(end.session_id))
            self._finishing.add(task)
            task.add_done_callback(self._finishing.discard)
        return True

    @contextlib.contextmanager
    def _taken_here(self, session_id: str) -> Iterator[bool]:
        """Whether this process may try to finish the session now: False while another
        of its tasks does (the final end's and the finish job's both come here).

        Taken before the claim, not after it: a claim this node confirmed is taken up
        again by this node (an earlier try that stopped), so two tasks that both asked
        while the first confirmed would both merge, into the same file: a stored dump
        holding the session twice, its close line in the middle.
        """
        if session_id in self.finisher.waiting or session_id in self._active:
            yield False
            return
        self._active.add(session_id)
        try:
            yield True
        finally:
            self._active.discard(session_id)

    async def _finish_now(self, session_id: str) -> None:
        with self._taken_here(session_id) as taken:
            if not taken:
                return
            try:
                now = self._clock()
                grace = self.config.ingest.resume_grace_s
                if await self.directory.claim(session_id, self.node_id, now, grace):
                    await self._finish_claimed(session_id)
            except Exception as exc:  # the job finishes it later
                log.error("session %s: finish after the last segment failed: %r", session_id, exc)

    async def _finish_claimed(self, session_id: str) -> State | None:
        """Merge and finish a session this process has taken and claimed."""
        record = await self.directory.get(session_id)
        if record is None:
            return None
        segments = await self.directory.of_session(session_id)
        session = await self._merge(record, segments)
        await self.finisher.finish(session)
        if session.state is State.QUEUED:
            await self._delete_segments(segments)
            await self.directory.forget(session_id)
        return session.state

    async def _retry_pending(self) -> None:
        pending, self.pending = self.pending, []
        for end in pending:
            if not await self._record_end(end):
                self.pending.append(end)

    async def _recover_segments(self) -> None:
        """Segments a crash left in the live directory end now, as they are."""
        live_dir = self.config.live_dir
        paths = await asyncio.to_thread(lambda: sorted(live_dir.glob(f"*{SEGMENT_SUFFIX}")))
        for path in paths:
            name = path.name.removesuffix(SEGMENT_SUFFIX)
            session_id, _, segment_id = name.partition(".")
            if not segment_id or self.owns(session_id):
                continue
            lines, raw, first, last = await asyncio.to_thread(repair_segment, path)
            facts = {
                "seq_from": first or None,
                "seq_to": last or None,
                "lines": lines,
                "raw_bytes": raw,
                "messages": lines,
                "bytes_received": 0,
                "dropped_messages": 0,
                "connections": 1,
            }
            await self.end(
                session_id,
                segment_id,
                path if lines else None,
                facts,
                EndReason.RECOVERED,
                ABNORMAL_CLOSURE,
                False,
            )
            log.warning("session %s: segment %s recovered after a crash", session_id, segment_id)

    # -- finishing whichever session is final --------------------------------------------

    async def _work_forever(self) -> None:
        while True:
            try:
                if self.pending:
                    await self._retry_pending()
                while await self.work_once():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("segment finisher failed; retrying")
            await asyncio.sleep(_POLL_S)

    async def work_once(self) -> bool:
        """Lease one due finish job and handle it; False when none was due."""
        now = self._clock()
        job = await self.queue.lease(FINISH_JOB, self.node_id, now, _LEASE_S)
        if job is None:
            return False
        try:
            await self._handle(job)
        except Exception as exc:
            log.error("session %s: segment finish failed, retried: %r", job.session_id, exc)
            later = self._clock() + 1.0
            await self.queue.retry(job, self.node_id, self._clock(), later, repr(exc)[:500])
        return True

    async def _handle(self, job: Job) -> None:
        with self._taken_here(job.session_id) as taken:
            if taken:
                await self._handle_taken(job)
            else:
                now = self._clock()
                await self.queue.retry(job, self.node_id, now, now + 1.0, "being finished here")

    async def _handle_taken(self, job: Job) -> None:
        session_id = job.session_id
        grace = self.config.ingest.resume_grace_s
        now = self._clock()
        record = await self.directory.get(session_id)
        if record is None or int(record.get("state_rank", 0)) >= SessionState.STORED.rank:
            await self.directory.forget(session_id)
            await self.queue.complete(job, self.node_id, now, {"outcome": "stored"})
            return
        if not await self.directory.claim(session_id, self.node_id, now, grace):
            segments = await self.directory.of_session(session_id)
            live = any(s.get("state") != ENDED for s in segments)
            due = max((float(s.get("ended_at") or 0) for s in segments), default=now) + grace
            if live or due <= now:
                due = now + max(grace, 1.0)
            await self.queue.retry(job, self.node_id, now, due + 0.05, "not final yet")
            return
        state = await self._finish_claimed(session_id)
        outcome = state.value if state is not None else "gone"
        await self.queue.complete(job, self.node_id, self._clock(), {"outcome": outcome})

    def _ordered(self, segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(
            segments,
            key=lambda s: (
                not s.get("first"),
                s.get("seq_from") or 0,
                s.get("opened_at") or 0,
            ),
        )

    async def _merge(self, record: Mapping[str, Any], found: list[dict[str, Any]]) -> Session:
        session_id = str(record["_id"])
        segments = self._ordered(found)
        parts: list[bytes] = []
        for segment in segments:
            key = segment.get("key")
            if not key:
                continue
            chunks = [chunk async for chunk in self.dumps.read(key)]
            parts.append(b"".join(chunks))
        ended = [s for s in segments if s.get("state") == ENDED]
        last = max(ended, key=lambda s: s.get("ended_at") or 0, default={})
        final = any(s.get("final") for s in segments)
        reason = EndReason(last.get("reason") or EndReason.RESUME_EXPIRED.value)
        if not final and reason in FINAL_REASONS:
            reason = EndReason.RESUME_EXPIRED
        if not final and reason is not EndReason.RECOVERED:
            reason = EndReason.RESUME_EXPIRED
        code = int(last.get("close_code") or ABNORMAL_CLOSURE)
        ended_at = datetime.fromtimestamp(float(last.get("ended_at") or self._clock()), UTC)
        relative = record.get("dialect") == "rtcstats-js"
        close = close_line(code, ended_at.timestamp() * 1000, relative=relative, last_ms=None)
        out = self.config.live_dir / f"{session_id}.rtcstats.zst"
        level = self.config.dumps.zstd_level
        started_at = record.get("started_at")
        if not isinstance(started_at, datetime):
            started_at = ended_at
        session = Session(session_id, started_at, State.FINISHING)
        if not parts:
            session.discard()
            raise NotFound(f"session {session_id}: no segment holds an event")
        merged = await asyncio.to_thread(merge_segments, parts, out, level, close)
        facts = facts_of(record)
        for name in ("messages", "bytes_received", "dropped_messages", "connections"):
            facts[name] = sum(int(s.get(name) or 0) for s in segments)
        facts["dropped_messages"] += merged.duplicates
        facts["last_seq"] = merged.last_seq or None
        facts["dump_raw_bytes"] = merged.raw_bytes
        session.seal(Ending(reason, code, ended_at, out, facts))
        log.info(
            "session %s: %d segments merged on %s (%d duplicates dropped)",
            session_id,
            len(parts),
            self.node_id,
            merged.duplicates,
        )
        return session

    async def merge_live(self, session_id: str, out: Path) -> bool:
        """The session as it stands, into ``out`` (zstd frames, no close line): its
        ended segments from the dump store and this collector's live ones from disk.
        A live segment on another collector joins once it ends. False: nothing yet."""
        segments = self._ordered(await self.directory.of_session(session_id))
        parts: list[bytes] = []
        for segment in segments:
            key = segment.get("key")
            if key and segment.get("state") == ENDED:
                parts.append(b"".join([chunk async for chunk in self.dumps.read(key)]))
            elif segment.get("state") != ENDED and segment.get("node") == self.node_id:
                path = segment_path(self.config.live_dir, session_id, segment["segment_id"])
                with contextlib.suppress(FileNotFoundError):
                    parts.append(await asyncio.to_thread(path.read_bytes))
        if not parts:
            return False
        level = self.config.dumps.zstd_level
        await asyncio.to_thread(merge_segments, parts, out, level, None)
        return True

    async def _delete_segments(self, segments: list[dict[str, Any]]) -> None:
        for segment in segments:
            key = segment.get("key")
            if key:
                with contextlib.suppress(Exception):
                    await self.dumps.delete(key)
