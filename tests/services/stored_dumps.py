"""Put a dump file into a running collector as a finished session, without a socket.

For dumps no client can replay (whole-document exports, on-disk dumps of other
servers): the file goes through the collector's own DumpStore, gets its quality
summary and record like a finished session, and the manager's ``on_stored`` hooks
run (the viewer link, forwarding), as they do at the end of a real session.
"""

from __future__ import annotations

import asyncio
import gzip
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rtcstats_server.analysis.stored import quality_fields
from rtcstats_server.dumps.codecs import compress_frame
from rtcstats_server.http.keys import CONFIG, DUMPS, MANAGER, RECORDS
from rtcstats_server.storage.base import dump_key
from tests.services.collector import RunningCollector

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
    collector: RunningCollector, path: Path, fields: dict[str, Any] | None = None
) -> str:
    """The new session's id; ``fields`` add to or override the record's fields."""
    app = collector.app
    config = app[CONFIG]
    session_id = uuid.uuid4().hex
    started = datetime.now(UTC) - timedelta(minutes=5)
    staging = config.server.data_dir / f"staging-{session_id}.zst"
    staging.parent.mkdir(parents=True, exist_ok=True)
    raw = await asyncio.to_thread(_compress, path, staging)
    key = dump_key(session_id, started, config.storage.prefix)
    stored = await app[DUMPS].put(key, staging)
    quality = await quality_fields(app[DUMPS], stored.key, config.quality)
    ended = datetime.now(UTC)
    record = {
        "state": "stored",
        "dialect": "file",
        "url": f"/{path.name}",
        "node_id": app[MANAGER].node_id,
        "started_at": started,
        "ended_at": ended,
        "updated_at": ended,
        "duration_s": round((ended - started).total_seconds(), 3),
        "close_code": 1000,
        "end_reason": "client_closed",
        "dump_key": stored.key,
        "dump_bytes": stored.size,
        "dump_raw_bytes": raw,
        **quality,
        **(fields or {}),
    }
    await app[RECORDS].upsert(session_id, record)
    for hook in app[MANAGER].on_stored:
        await hook(session_id)
    return session_id
