"""An uploaded dump made into a session, through the finish every session takes.

The dump is rewritten into our layout first (``normalize``: whole, close line
included), which seals the session; then THE finish (``sessions/finish.py``) stores
it as it stores a streamed or recovered one: dump into the dump store, one final
record (with the viewer's link), analysis and forwarding queued. Its record says
``dialect: upload`` (and ``client_protocol``, the dialect of the events inside):
forwarders take browser dialects only, so a dump a customer uploads here is never
sent on upstream by itself, and a forwarder pointed at this very server cannot loop.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rtcstats_server.config import Config
from rtcstats_server.dumps.events import ReadLimits
from rtcstats_server.exceptions import UploadRefused
from rtcstats_server.metadata.record import EndReason, utcnow
from rtcstats_server.metrics import Metrics
from rtcstats_server.sessions.finish import Finisher
from rtcstats_server.sessions.state import Ending, Session, State
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
    def __init__(self, config: Config, finisher: Finisher, node_id: str, metrics: Metrics) -> None:
        self.config = config
        self.finisher = finisher
        self.node_id = node_id
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
            return await self.store(
                assembly.parts, file_name, assembly.size, session_id=assembly.session_id
            )

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
    ) -> str:
        """Make the upload whose bytes are the files ``sources`` (in order) a stored
        session; its id. UploadRefused says why a file is not a dump we keep; a store
        that fails raises (the uploader retries; a retried assembly rewrites its
        session). The sources are the caller's to delete; ``session_id`` is a new one
        unless given."""
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
            session = self._sealed(session_id, target, facts, name, size)
            await self.finisher.finish(session, keep_trying=False)
        except UploadRefused as exc:
            self.metrics.received_uploads.labels(exc.error_code).inc()
            raise
        finally:
            await asyncio.to_thread(target.unlink, missing_ok=True)  # unless the store took it
        self.metrics.received_uploads.labels("stored").inc()
        self.metrics.received_upload_bytes.inc(size)
        log.info(
            "session %s stored from an upload (%s, %s, %d events, %d bytes)",
            session_id,
            facts.layout,
            facts.client_protocol,
            facts.events,
            size,
        )
        return session_id

    def _sealed(
        self, session_id: str, target: Path, facts: Normalized, name: str | None, size: int
    ) -> Session:
        """The upload as a session whose dump is whole: what only an upload knows."""
        now = utcnow()
        started = _when(facts.started_ms) or now
        ended = max(_when(facts.ended_ms) or started, started)
        meta = facts.metadata
        known = {
            **facts.fields,
            "dialect": UPLOAD_DIALECT,
            "source": "upload",
            "client_protocol": facts.client_protocol,
            "upload_layout": facts.layout,
            "upload_file_name": name,
            "upload_bytes": size,
            "uploaded_at": now,
            "url": _text(meta.get("url")),
            "origin": _text(meta.get("origin")),
            "user_agent": _text(meta.get("userAgent")),
            "node_id": self.node_id,
            "messages": facts.events,
            "dump_raw_bytes": facts.raw_bytes,
        }
        session = Session(session_id, started, State.FINISHING)
        session.seal(Ending(EndReason.UPLOADED, None, ended, target, known))
        return session


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
