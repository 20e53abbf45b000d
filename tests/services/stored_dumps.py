"""Put a dump file into a running collector as a finished session, without a socket.

For dumps no client can replay (whole-document exports, on-disk dumps of other
servers): the file is sealed as a session and goes through the collector's own
finish (``sessions/finish.py``), as every stored session does: dump store, one
final record with its viewer link, analysis and forwarding queued. The helper then
waits for the analysis to set the quality summary.
"""

from __future__ import annotations

import asyncio
import gzip
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rtcstats_server.dumps.codecs import compress_frame
from rtcstats_server.http.keys import CONFIG, MANAGER, RECORDS
from rtcstats_server.metadata.record import EndReason
from rtcstats_server.sessions.state import Ending, Session, State
from tests.services.collector import RunningCollector, analysed, wait_until

_FRAME = 1 << 20


def _compress(source: Path, target: Path) -> int:
    """zstd frames of the file's content (as the collector stores dumps); raw size.

    A gzip file is stored decompressed, as an upload would be.
    """
    raw = 0
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rb") as src, target.open("wb") as out:
        while chunk := src.read(_FRAME):
            raw += len(chunk)
            out.write(compress_frame(chunk, 3))
    return raw


async def store_dump_file(
    collector: RunningCollector,
    path: Path,
    fields: dict[str, Any] | None = None,
    analysis_timeout: float = 30,
) -> str:
    """The new session's id; ``fields`` add to or override the record's facts
    (``analysis_timeout``: a 200 MB dump's analysis takes minutes)."""
    app = collector.app
    config = app[CONFIG]
    manager = app[MANAGER]
    session_id = uuid.uuid4().hex
    started = datetime.now(UTC) - timedelta(minutes=5)
    staging = config.server.data_dir / f"staging-{session_id}.zst"
    staging.parent.mkdir(parents=True, exist_ok=True)
    raw = await asyncio.to_thread(_compress, path, staging)
    facts = {
        "dialect": "file",
        "url": f"/{path.name}",
        "node_id": manager.node_id,
        "dump_raw_bytes": raw,
        **(fields or {}),
    }
    session = Session(session_id, started, State.FINISHING)
    session.seal(Ending(EndReason.CLIENT_CLOSED, 1000, datetime.now(UTC), staging, facts))
    await manager.finisher.finish(session, keep_trying=False)
    if config.quality.enabled:
        records = app[RECORDS]

        async def summarized() -> bool:
            record = await records.get(session_id)
            return record is not None and analysed(record)

        await wait_until(summarized, analysis_timeout, f"the analysis of session {session_id}")
    return session_id
