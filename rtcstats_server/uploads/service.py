"""An uploaded dump made into a session, the same way a streamed one ends up.

A streamed session ends in ``SessionManager._finish``: dump stored under its
``dump_key``, quality summary, record written in state ``stored``, then the
``on_stored`` hooks (the viewer's link, the forwarders). An upload takes the same
steps in the same order, from a dump rewritten into our layout first
(``normalize``). Its record says ``dialect: upload`` (and ``client_protocol``, the
dialect of the events inside): forwarders take browser dialects only, so a dump a
customer uploads here is never sent on upstream by itself, and a forwarder pointed
at this very server cannot loop.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rtcstats_server.analysis.stored import quality_fields
from rtcstats_server.config import Config
from rtcstats_server.dumps.events import ReadLimits
from rtcstats_server.exceptions import UploadRefused
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.record import EndReason, SessionState, utcnow
from rtcstats_server.metrics import Metrics
from rtcstats_server.sessions.live import SessionManager
from rtcstats_server.storage.base import DumpStore, dump_key
from rtcstats_server.uploads.chunks import UPLOAD_COST, Assembly, ChunkStore
from rtcstats_server.uploads.normalize import Normalized, normalize

log = logging.getLogger(__name__)

#: Record ``dialect`` of every uploaded session.
UPLOAD_DIALECT = "upload"
#: Longest uploaded file name kept in a record.
MAX_FILE_NAME = 200


def _when(ms: float | None) -> datetime | None:
    if ms is None:
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


class Uploads:
    def __init__(
        self,
        config: Config,
        manager: SessionManager,
        dumps: DumpStore,
        records: SessionStore,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.manager = manager
        self.dumps = dumps
        self.records = records
        self.metrics = metrics
        self.work = config.uploads_dir / "work"
        self.chunks = ChunkStore(config.uploads_dir, config.uploads)
        self._slots = asyncio.Semaphore(config.uploads.concurrency)
        caps = config.uploads
        self.limits = ReadLimits(caps.max_line_bytes, caps.max_expanded_bytes, caps.max_events)

    async def open(self) -> None:
        def prepare() -> None:
            shutil.rmtree(self.work, ignore_errors=True)  # half-converted at a crash
            self.work.mkdir(parents=True, exist_ok=True)

        await asyncio.to_thread(prepare)
        await self.chunks.open()

    async def close(self) -> None:
        await self.chunks.close()

    async def assemble(self, owner: str, file_id: str, file_name: str | None) -> str:
        """The session of a chunked file (the same one for every call: chunks.py)."""

        async def store(assembly: Assembly) -> str:
            record = await self.store(
                assembly.parts, file_name, assembly.size, session_id=assembly.session_id
            )
            return str(record["id"])

        self.chunks.reserve(UPLOAD_COST)  # this call, while it waits for its turn
        try:
            return await self.chunks.assemble(owner, file_id, file_name, store)
        finally:
            self.chunks.release(UPLOAD_COST)

    async def store(
        self,
        sources: Sequence[Path],
        file_name: str | None,
        size: int,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """Make the upload whose bytes are the files ``sources`` (in order) a stored
        session; its record. UploadRefused says why a file is not a dump we keep. The
        sources are the caller's to delete; ``session_id`` is a new one unless given
        (a retried assembly rewrites its session)."""
        session_id = session_id or uuid.uuid4().hex
        target = self.work / f"{session_id}.rtcstats.zst"
        name = file_name[:MAX_FILE_NAME] if file_name else None
        try:
            async with self._slots:
                facts = await asyncio.to_thread(
                    normalize,
                    sources,
                    target,
                    session_id,
                    file_name=name,
                    limits=self.limits,
                    level=self.config.dumps.zstd_level,
                    mask=self.config.privacy.obfuscate_ip_addresses,
                )
            record = await self._record(session_id, target, facts, name, size)
        except UploadRefused as exc:
            self.metrics.received_uploads.labels(exc.error_code).inc()
            raise
        finally:
            await asyncio.to_thread(target.unlink, missing_ok=True)
        self.metrics.received_uploads.labels("stored").inc()
        self.metrics.received_upload_bytes.inc(size)
        for hook in self.manager.on_stored:
            await hook(session_id)
        log.info(
            "session %s stored from an upload (%s, %s, %d events, %d bytes)",
            session_id,
            facts.layout,
            facts.client_protocol,
            facts.events,
            size,
        )
        return await self.records.get(session_id) or record

    async def _record(
        self, session_id: str, target: Path, facts: Normalized, name: str | None, size: int
    ) -> dict[str, Any]:
        now = utcnow()
        started = _when(facts.started_ms) or now
        ended = _when(facts.ended_ms) or started
        key = dump_key(session_id, started, self.config.storage.prefix)
        stored = await self.dumps.put(key, target)
        quality = await quality_fields(self.dumps, stored.key, self.config.quality)
        meta = facts.metadata
        record: dict[str, Any] = {
            **facts.fields,
            "dialect": UPLOAD_DIALECT,
            "source": "upload",
            "client_protocol": facts.client_protocol,
            "upload_layout": facts.layout,
            "upload_file_name": name,
            "upload_bytes": size,
            "uploaded_at": now,
            "url": meta.get("url") if isinstance(meta.get("url"), str) else None,
            "origin": meta.get("origin") if isinstance(meta.get("origin"), str) else None,
            "user_agent": meta.get("userAgent") if isinstance(meta.get("userAgent"), str) else None,
            "node_id": self.manager.node_id,
            "state": SessionState.STORED.value,
            "started_at": started,
            "ended_at": ended,
            "updated_at": now,
            "duration_s": round(max((ended - started).total_seconds(), 0.0), 3),
            "messages": facts.events,
            "end_reason": EndReason.UPLOADED.value,
            "dump_key": stored.key,
            "dump_bytes": stored.size,
            "dump_raw_bytes": facts.raw_bytes,
            **quality,
        }
        await self.records.upsert(session_id, record)
        return {"id": session_id, **record}
