"""Retention: records and dumps of sessions older than ``retention.days`` are deleted.

A periodic sweep rather than a TTL index: it works the same on every store (FerretDB
and SQLite have no TTL), and a record's dump must go with it. The dump is deleted
before the record, so a crash between the two leaves a record whose next sweep
retries; never a dump nobody can find. Sessions still live on some node are left
alone: the node finishes or recovers them, and a later sweep deletes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from rtcstats_server.config import RetentionConfig
from rtcstats_server.exceptions import NotFound, RtcstatsError, StoreUnavailable
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.record import SessionState, utcnow
from rtcstats_server.storage.base import DumpStore

log = logging.getLogger(__name__)

#: Records read per step: bounded memory however much is due.
BATCH = 500
_LIVE = {SessionState.STREAMING.value, SessionState.DETACHED.value, SessionState.FINISHING.value}


class RetentionSweeper:
    def __init__(
        self,
        config: RetentionConfig,
        records: SessionStore,
        dumps: DumpStore,
        batch: int = BATCH,
    ) -> None:
        self.config = config
        self.records = records
        self.dumps = dumps
        self.batch = batch

    async def sweep(self, now: datetime | None = None) -> int:
        """Delete everything due; return how many records went."""
        if self.config.days <= 0:
            return 0
        cutoff = (now or utcnow()) - timedelta(days=self.config.days)
        deleted = 0
        while True:
            batch = await self.records.started_before(cutoff, self.batch)
            done = [r for r in batch if r.get("state") not in _LIVE]
            for record in done:
                key = record.get("dump_key")
                if key:
                    with contextlib.suppress(NotFound):
                        await self.dumps.delete(key)
                deleted += await self.records.delete(record["id"])
            if len(batch) < self.batch or not done:
                break  # nothing more is due, or only live sessions are left at the front
        if deleted:
            log.info("retention: deleted %d sessions started before %s", deleted, cutoff)
        return deleted

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except StoreUnavailable as exc:
                log.warning("retention sweep skipped, store unavailable: %s", exc)
            except (OSError, RtcstatsError):
                log.exception("retention sweep failed; retrying next period")
            await asyncio.sleep(self.config.sweep_interval_s)


@contextlib.asynccontextmanager
async def retention_running(
    config: RetentionConfig, records: SessionStore, dumps: DumpStore
) -> AsyncIterator[None]:
    """The sweep runs while the caller's block does (the app's lifetime), when enabled.

    The stores are parameters, not app keys: this layer sits below the HTTP app.
    """
    task: asyncio.Task[None] | None = None
    if config.days > 0:
        sweeper = RetentionSweeper(config, records, dumps)
        task = asyncio.create_task(sweeper.run(), name="retention-sweep")
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
