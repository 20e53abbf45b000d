"""THE finish: a sealed session's dump into the dump store, its record, what follows.

Every stored session comes through here, whatever its source: a live session whose
client left (``live.py``), one a crash left behind (``recovery.py``), an uploaded
dump (``uploads/service.py``). From ``sealed`` (the dump whole and durable on local
disk, see ``state.py``) it goes:

1. **put**: the dump store takes the dump (a bucket's store keeps it in its outbox);
2. **record**: the final record, assembled once (``fields.final_record``) with what
   each hook contributes (the viewer's link, the forwarding state), written in one
   upsert; a store that refuses it gets it again with bounded values;
3. **queue**: each hook queues what follows durably (analysis, forwarding) and the
   dump store may start the dump's upload; nothing here waits for them, they record
   their outcome themselves (``metadata.steps``).

A session whose finish stops midway (a store or disk away) waits in ``waiting`` and
is taken up again from the state it reached by ``retry``, which the session sweeper
runs every ``metadata.retry_interval_s``; what a restart finds of it, crash recovery
finishes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from rtcstats_server.config import Config
from rtcstats_server.exceptions import RtcstatsError, StoreUnavailable
from rtcstats_server.logs import LOG_FIELDS
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.record import essential_fields
from rtcstats_server.metrics import Metrics
from rtcstats_server.sessions.fields import final_record
from rtcstats_server.sessions.state import Session, State
from rtcstats_server.storage.base import DumpStore, StoredDump, dump_key

log = logging.getLogger(__name__)


class FinishHook(Protocol):
    """Something that has a say in every stored session (the viewer, a forwarder, the
    analysis). Hooks contribute fields and queue work; they never write the record."""

    async def contribute(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        """Fields this hook adds to the final record (``record``: the rest of it)."""

    async def stored(self, record: Mapping[str, Any]) -> None:
        """The record is written: queue what follows it, durably and idempotently
        (it may run again for the same session after a failure)."""


class Finisher:
    def __init__(
        self, config: Config, dumps: DumpStore, records: SessionStore, metrics: Metrics
    ) -> None:
        self.config = config
        self.dumps = dumps
        self.records = records
        self.metrics = metrics
        self.hooks: list[FinishHook] = []
        #: Sessions whose finish stopped midway, by id: ``retry`` takes them up again.
        self.waiting: dict[str, Session] = {}

    async def finish(self, session: Session, *, keep_trying: bool = True) -> None:
        """Take a sealed session as far as it goes: put, record, queue.

        A step that fails leaves the session in ``waiting`` (``retry`` goes on from
        there). With ``keep_trying`` false (an upload, whose client retries instead)
        a failure before the record is written raises instead; once the record is
        written, the session is stored and only the queueing is retried.
        """
        try:
            await self._advance(session)
        except Exception as exc:
            if not keep_trying and session.state is not State.STORED:
                raise
            self.waiting[session.id] = session
            log.error(
                "session %s: finish stopped at %s (%r); retried every %.1f s",
                session.id,
                session.state.value,
                exc,
                self.config.metadata.retry_interval_s,
            )

    async def retry(self) -> None:
        """One round over the waiting sessions; stops at the first that fails again
        (what stopped it, a store or a disk, is most likely still away for all)."""
        for session in list(self.waiting.values()):
            try:
                await self._advance(session)
            except Exception as exc:
                log.warning("session %s: finish still stopped: %r", session.id, exc)
                return
            del self.waiting[session.id]
            log.info("session %s: finished after a retry", session.id)

    async def _advance(self, session: Session) -> None:
        if session.state is State.SEALED:
            session.put(await self._put(session))
        if session.state is State.PUT:
            session.store(await self._record(session))
        if session.state is State.STORED:
            await self._queue(session)
            session.queue()

    async def _put(self, session: Session) -> StoredDump | None:
        assert session.ending is not None
        dump = session.ending.dump
        if not isinstance(dump, Path):
            return dump  # stored already, or none
        key = dump_key(session.id, session.started_at, self.config.storage.prefix)
        try:
            return await self.dumps.put(key, dump)
        except (OSError, RtcstatsError):
            self.metrics.store_errors.labels(self.dumps.name).inc()
            raise

    async def _record(self, session: Session) -> dict[str, Any]:
        assert session.ending is not None
        contributions: list[Mapping[str, Any]] = []
        if session.stored is not None:  # nothing stored: no viewer link, nothing to forward
            draft = final_record(session, ())
            contributions = [await hook.contribute(draft) for hook in self.hooks]
        record = final_record(session, contributions)
        await self._write(session.id, record)
        reason = session.ending.reason
        self.metrics.finished.labels(reason.value).inc()
        _log_end(session.id, record)
        return record

    async def _write(self, session_id: str, record: dict[str, Any]) -> None:
        """The final record; if the store refuses it (a value it cannot hold), the
        record with bounded values: a session must never stay live in its record
        while its dump is stored. The last error when neither could be written."""
        try:
            await self._upsert(session_id, record)
        except StoreUnavailable:
            raise  # the store is away, not refusing: the finish is retried whole
        except Exception:
            # made only when needed: bounding every value costs a walk of the record
            await self._upsert(session_id, essential_fields(record, ""))

    async def _upsert(self, session_id: str, record: dict[str, Any]) -> None:
        """One write of the record, counted and logged when it fails."""
        try:
            await self.records.upsert(session_id, record)
        except StoreUnavailable:
            self.metrics.store_errors.labels(self.records.name).inc()
            raise
        except Exception as exc:  # any refusal: the driver's, SQLite's, a full disk
            self.metrics.store_errors.labels(self.records.name).inc()
            log.error("session %s: record write failed: %r", session_id, exc)
            raise

    async def _queue(self, session: Session) -> None:
        record = session.record
        stored = session.stored
        if record is None or stored is None:
            return  # no dump: nothing to analyse, forward or upload
        for hook in self.hooks:
            await hook.stored(record)
        await self.dumps.recorded(stored.key)


def _log_end(session_id: str, record: Mapping[str, Any]) -> None:
    """One line per stored session (``session_end`` in JSON logs), whatever its source."""
    names = (
        "client_session_id",
        "conference_id",
        "user_id",
        "app",
        "dialect",
        "end_reason",
        "close_code",
        "duration_s",
        "messages",
        "bytes_received",
        "dropped_messages",
        "connections",
        "dump_key",
        "dump_bytes",
        "dump_raw_bytes",
    )
    log.info(
        "session %s finished: %s (code %s), %s messages, %s bytes in, dump %s (%s bytes)",
        session_id,
        record["end_reason"],
        record["close_code"],
        record["messages"],
        record["bytes_received"],
        record["dump_key"] or "(none)",
        record["dump_bytes"] or 0,
        extra={
            LOG_FIELDS: {
                "event": "session_end",
                "session_id": session_id,
                **{name: record.get(name) for name in names},
            }
        },
    )
