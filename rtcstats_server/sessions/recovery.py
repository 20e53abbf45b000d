"""Crash recovery: what a previous run of this node left live is finished at start.

A record still live (streaming, detached) that names this node belongs to a session
the previous run never finished. If its live dump is there, the torn last frame is
cut and a close line appended (``repair_live_dump``), and the session goes through
THE finish (``finish.py``) like any other, ending ``recovered``: dump stored, one
final record with the facts the live record holds, analysis and forwarding queued.
If its live dump is gone, the session was finished and its dump stored, but its
final record never written (a full disk, a store refusing it): the dump is looked up
where it was stored and linked, so no dump is ever orphaned.

While the session store does not answer, recovery waits for it (and ingest goes on);
sessions of this process started meanwhile are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rtcstats_server.config import Config
from rtcstats_server.dumps.repair import repair_live_dump
from rtcstats_server.exceptions import NotFound, StoreUnavailable
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.record import EndReason, utcnow
from rtcstats_server.metrics import Metrics
from rtcstats_server.sessions.connection import ABNORMAL_CLOSURE
from rtcstats_server.sessions.fields import facts_of
from rtcstats_server.sessions.finish import Finisher
from rtcstats_server.sessions.state import Ending, Session, State
from rtcstats_server.storage.base import DumpStore, StoredDump, dump_key

log = logging.getLogger(__name__)


class Recovery:
    def __init__(
        self,
        config: Config,
        records: SessionStore,
        dumps: DumpStore,
        finisher: Finisher,
        metrics: Metrics,
        owns: Callable[[str], bool],
    ) -> None:
        self.config = config
        self.records = records
        self.dumps = dumps
        self.finisher = finisher
        self.metrics = metrics
        #: True for a session this process has taken on since it started.
        self.owns = owns
        self.node_id = ""
        self._later: asyncio.Task[None] | None = None

    async def start(self, node_id: str) -> None:
        """Recover now, or, while the session store is away, as soon as it answers."""
        self.node_id = node_id
        try:
            await self.recover()
        except StoreUnavailable as exc:
            log.warning("crash recovery postponed until the session store answers: %s", exc)
            self._later = asyncio.create_task(self._recover_later(), name="crash-recovery")

    async def stop(self) -> None:
        if self._later is not None:
            later, self._later = self._later, None
            later.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await later

    async def _recover_later(self) -> None:
        while True:
            await asyncio.sleep(self.config.metadata.retry_interval_s)
            try:
                await self.recover()
                return
            except StoreUnavailable:
                continue

    async def recover(self) -> None:
        """Finish every session of this node a crash left live. StoreUnavailable when
        some could not be taken on now (retried later)."""
        failed = 0
        for record in await self.records.unfinished(self.node_id):
            if self.owns(record["id"]):
                continue  # ours now (a recovery postponed past the first sessions)
            if self.config.server.cluster and not await asyncio.to_thread(
                self._live_dump(record["id"]).exists
            ):
                continue  # a cluster's session: its segments recover (sessions/segments.py)
            try:
                await self._recover_one(record)
            except Exception as exc:  # a full disk, a store refusing it: retried later
                failed += 1
                self.metrics.store_errors.labels(self.records.name).inc()
                log.error("session %s: recovery failed, retried later: %r", record["id"], exc)
        if failed:
            raise StoreUnavailable(f"{failed} unfinished sessions could not be recovered yet")

    def _live_dump(self, session_id: str) -> Path:
        """Where a session that is not a cluster's keeps its live dump."""
        return self.config.live_dir / f"{session_id}.rtcstats.zst"

    async def _recover_one(self, record: dict[str, Any]) -> None:
        session_id = record["id"]
        session = Session(session_id, record["started_at"], State.FINISHING)
        path = self._live_dump(session_id)
        facts = facts_of(record)
        dump: Path | StoredDump | None = None
        if await asyncio.to_thread(path.exists):
            lines, raw, last_write = await asyncio.to_thread(
                repair_live_dump, path, self.config.dumps.zstd_level, ABNORMAL_CLOSURE
            )
            ended = datetime.fromtimestamp(last_write, UTC)
            facts.update({"messages": max(lines - 3, 0), "dump_raw_bytes": raw})
            dump = path
        else:
            ended = record.get("updated_at") or utcnow()
            key = dump_key(session_id, record["started_at"], self.config.storage.prefix)
            size = await stored_size(self.dumps, key)
            if size is not None:
                dump = StoredDump(key, size)
                log.warning("session %s: its stored dump had no record; linked", session_id)
        session.seal(Ending(EndReason.RECOVERED, ABNORMAL_CLOSURE, ended, dump, facts))
        await self.finisher.finish(session)
        log.warning("session %s recovered after a crash", session_id)


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
