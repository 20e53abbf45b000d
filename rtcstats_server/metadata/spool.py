"""Record writes survive a metadata database outage: a durable local spool, replayed in order.

``SpoolingSessionStore`` wraps any ``SessionStore``. While the database answers, a
write goes straight to it. When a write fails as unavailable, it and every later
write are appended to ``WriteSpool`` (msgpack, fsynced) instead; a background task
tries the database every ``retry_interval_s`` and, once it answers, replays the spool
in order and only then lets writes through again, so no write overtakes an older one.
Replaying an entry twice (a crash between applying it and recording the progress) is
harmless: upserts are idempotent and never move a session backwards.

Reads go to the database and fail fast with StoreUnavailable (the API's 503) while it
is away. Reads that must see every write (crash recovery, retention) also wait for
the spool to be empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import msgpack  # type: ignore[import-untyped]

from rtcstats_server.exceptions import StoreUnavailable
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.record import SessionQuery, check_update, essential_fields

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Entries read per replay step; their progress is recorded after each one.
_REPLAY_BATCH = 256
_READ_WINDOW = 1 << 20
_OFFSET_WIDTH = 20


#: Kinds of spooled writes: a session layer's ``upsert``, a later step's ``update``.
UPSERT, UPDATE = "upsert", "update"


@dataclass(frozen=True)
class SpooledWrite:
    session_id: str
    fields: dict[str, Any]
    #: Byte offset just past this entry: where replay resumes after it.
    end: int
    kind: str = UPSERT


class WriteSpool:
    """An append-only file of ``[session_id, fields]`` msgpack entries (``[session_id,
    fields, "update"]`` for an update) and a progress file.

    ``records.msgpack`` grows by whole entries, each fsynced before ``append`` returns;
    a torn tail (a crash mid-write) is cut at open. ``applied.offset`` holds how far
    replay got. When replay reaches the end, both are reset to empty.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "records.msgpack"
        self.offset_path = directory / "applied.offset"
        self.applied = 0
        self.end = 0
        self.entries = 0
        self._fd: int | None = None
        self._offset_fd: int | None = None
        self._lock = asyncio.Lock()

    @property
    def pending(self) -> bool:
        return self.end > self.applied

    async def open(self) -> None:
        await asyncio.to_thread(self._open)
        if self.pending:
            log.warning(
                "metadata spool holds %d record writes from before the restart; "
                "they are replayed when the store answers",
                self.entries,
            )

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._offset_fd = os.open(self.offset_path, os.O_RDWR | os.O_CREAT, 0o600)
        applied_text = os.pread(self._offset_fd, _OFFSET_WIDTH, 0).strip()
        applied = int(applied_text) if applied_text.isdigit() else 0
        whole, count_after = self._scan(applied)
        if whole < os.fstat(self._fd).st_size:
            log.warning("metadata spool: cutting a torn last entry at byte %d", whole)
            os.ftruncate(self._fd, whole)
            os.fsync(self._fd)
        self.end = whole
        self.applied = applied if applied <= whole else 0
        self.entries = count_after if applied <= whole else self._scan(0)[1]

    def _scan(self, applied: int) -> tuple[int, int]:
        """(end of the last whole entry, entries after ``applied``)."""
        unpacker = msgpack.Unpacker(raw=False, timestamp=3)
        whole = 0
        after = 0
        with open(self.path, "rb") as handle:
            while chunk := handle.read(_READ_WINDOW):
                unpacker.feed(chunk)
                try:
                    for _ in unpacker:
                        whole = unpacker.tell()
                        after += whole > applied
                except (ValueError, msgpack.UnpackException):
                    return whole, after  # garbage after a torn write: cut there
        return whole, after

    async def close(self) -> None:
        fds = [fd for fd in (self._fd, self._offset_fd) if fd is not None]
        self._fd = self._offset_fd = None
        for fd in fds:
            await asyncio.to_thread(os.close, fd)

    async def append(self, session_id: str, fields: dict[str, Any], kind: str = UPSERT) -> None:
        entry = [session_id, fields] if kind == UPSERT else [session_id, fields, kind]
        data = msgpack.packb(entry, datetime=True, use_bin_type=True)
        async with self._lock:
            await asyncio.to_thread(self._write, data)
            self.end += len(data)
            self.entries += 1

    def _write(self, data: bytes) -> None:
        fd = self._require_fd()
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)

    def _require_fd(self) -> int:
        if self._fd is None:
            raise StoreUnavailable("metadata spool is not open")
        return self._fd

    async def read(self, limit: int = _REPLAY_BATCH) -> list[SpooledWrite]:
        """Up to ``limit`` entries after the applied offset, oldest first."""
        start, end = self.applied, self.end
        if start >= end:
            return []
        return await asyncio.to_thread(self._read, start, end, limit)

    def _read(self, start: int, end: int, limit: int) -> list[SpooledWrite]:
        fd = self._require_fd()
        window = _READ_WINDOW
        while True:
            data = os.pread(fd, min(window, end - start), start)
            unpacker = msgpack.Unpacker(raw=False, timestamp=3)
            unpacker.feed(data)
            writes: list[SpooledWrite] = []
            for entry in unpacker:
                kind = entry[2] if len(entry) > 2 else UPSERT
                writes.append(SpooledWrite(entry[0], entry[1], start + unpacker.tell(), kind))
                if len(writes) == limit:
                    break
            if writes or start + len(data) >= end:
                return writes
            window *= 2  # one entry larger than the window

    async def mark_applied(self, write: SpooledWrite) -> None:
        """Remember replay progress; no fsync: losing it only replays idempotent writes."""
        self.applied = write.end
        self.entries = max(0, self.entries - 1)
        text = str(write.end).rjust(_OFFSET_WIDTH).encode()
        if self._offset_fd is not None:
            await asyncio.to_thread(os.pwrite, self._offset_fd, text, 0)

    async def reset_if_replayed(self) -> bool:
        """Empty both files once everything is applied; False if writes came meanwhile."""
        async with self._lock:
            if self.pending:
                return False
            if self.end:
                await asyncio.to_thread(self._reset)
            self.applied = self.end = self.entries = 0
            return True

    def _reset(self) -> None:
        os.ftruncate(self._require_fd(), 0)
        os.fsync(self._require_fd())
        if self._offset_fd is not None:
            os.ftruncate(self._offset_fd, 0)


@dataclass
class _Turn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class SpoolingSessionStore:
    """A ``SessionStore`` that keeps accepting writes while its backend is away."""

    def __init__(self, backend: SessionStore, spool_dir: Path, retry_interval_s: float) -> None:
        self.backend = backend
        self.name = backend.name
        self.spool = WriteSpool(spool_dir)
        self.retry_interval_s = retry_interval_s
        self.replayed = 0
        self._opened = False
        self._healthy = False
        self._reason = "not opened yet"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._turns: dict[str, _Turn] = {}

    # -- life ---------------------------------------------------------------------------

    async def open(self) -> None:
        await self.spool.open()
        try:
            await self.backend.open()
            self._opened = self._healthy = True
        except StoreUnavailable as exc:
            self._down(exc)
        self._task = asyncio.create_task(self._replay_forever(), name="metadata-spool-replay")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.backend.close()
        await self.spool.close()

    @property
    def healthy(self) -> bool:
        """The database answers and nothing is waiting in the spool."""
        return self._healthy and not self.spool.pending

    def _down(self, exc: StoreUnavailable) -> None:
        if self._healthy or self._reason != str(exc):
            log.warning("metadata store unavailable, record writes go to the spool: %s", exc)
        self._healthy = False
        self._reason = str(exc)

    def _problem(self) -> str:
        if not self._healthy:
            return f"{self._reason}; {self.spool.entries} record writes spooled locally"
        return f"replaying {self.spool.entries} spooled record writes"

    # -- writes -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _turn(self, session_id: str) -> AsyncIterator[None]:
        """Writes of one session leave in the order they came, direct or spooled."""
        turn = self._turns.setdefault(session_id, _Turn())
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if turn.users == 0:
                del self._turns[session_id]

    async def upsert(self, session_id: str, fields: dict[str, Any]) -> None:
        async with self._turn(session_id):
            if self.healthy:
                try:
                    await self.backend.upsert(session_id, fields)
                    return
                except StoreUnavailable as exc:
                    self._down(exc)
            await self.spool.append(session_id, fields)

    async def update(self, session_id: str, fields: dict[str, Any]) -> bool:
        """Straight through while the database answers; else spooled, in order with
        the session's other writes (then True: whether the record exists is known only
        when the write is replayed)."""
        check_update(fields)
        async with self._turn(session_id):
            if self.healthy:
                try:
                    return await self.backend.update(session_id, fields)
                except StoreUnavailable as exc:
                    self._down(exc)
            await self.spool.append(session_id, fields, UPDATE)
            return True

    async def delete(self, session_id: str) -> bool:
        self._require(caught_up=True)
        async with self._turn(session_id):
            return await self._backend(self.backend.delete(session_id))

    # -- replay -------------------------------------------------------------------------

    async def _replay_forever(self) -> None:
        while True:
            if not self.healthy:
                try:
                    await self._reconnect_and_replay()
                except StoreUnavailable as exc:
                    self._down(exc)
                except Exception:
                    log.exception("metadata spool replay failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.retry_interval_s)
            self._wake.clear()

    async def _reconnect_and_replay(self) -> None:
        if not self._opened:
            await self.backend.open()
            self._opened = True
        else:
            await self.backend.ping()
        self._healthy = True  # later writes queue behind the spool until it is empty
        replayed = 0
        while True:
            writes = await self.spool.read()
            if not writes:
                if await self.spool.reset_if_replayed():
                    break
                continue
            for write in writes:
                await self._replay(write)
                await self.spool.mark_applied(write)
                replayed += 1
        if replayed:
            self.replayed += replayed
            log.info("metadata store is back: %d spooled record writes replayed", replayed)

    async def _replay(self, write: SpooledWrite) -> None:
        """Apply one spooled write; one the store refuses (it cannot hold a value, the
        record is too large) is applied without its quality summary, so a session's
        end and its dump link are never lost; only if that is refused too is it dropped
        (one bad entry must not block the rest forever)."""
        apply = self.backend.update if write.kind == UPDATE else self.backend.upsert
        try:
            await apply(write.session_id, write.fields)
            return
        except StoreUnavailable:
            raise
        except Exception as exc:
            log.error("spooled write of session %s refused: %r", write.session_id, exc)
            refusal = exc
        try:
            small = essential_fields(write.fields, f"the store refused it: {refusal!r}")
            await apply(write.session_id, small)
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("dropping a spooled write of session %s", write.session_id)

    # -- reads --------------------------------------------------------------------------

    def _require(self, caught_up: bool = False) -> None:
        if not self._healthy or (caught_up and self.spool.pending):
            raise StoreUnavailable(self._problem())

    async def _backend(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except StoreUnavailable as exc:
            self._down(exc)
            self._wake.set()
            raise

    async def ping(self) -> None:
        if not self.healthy:
            raise StoreUnavailable(self._problem())
        await self._backend(self.backend.ping())

    async def get(self, session_id: str) -> dict[str, Any] | None:
        self._require()
        return await self._backend(self.backend.get(session_id))

    async def query(self, query: SessionQuery) -> list[dict[str, Any]]:
        self._require()
        return await self._backend(self.backend.query(query))

    async def unfinished(self, node_id: str) -> list[dict[str, Any]]:
        self._require(caught_up=True)
        return await self._backend(self.backend.unfinished(node_id))

    async def started_before(self, when: datetime, limit: int) -> list[dict[str, Any]]:
        self._require(caught_up=True)
        return await self._backend(self.backend.started_before(when, limit))
