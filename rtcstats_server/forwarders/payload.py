"""A stored dump made into the file a forwarder uploads.

The stored zstd bytes are first copied to a local spool file (the dump store may be
a bucket), then, off the event loop, either decompressed as they are (clients that
already speak fileFormat 3) or converted (``dumps.encode``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

from rtcstats_server.dumps.encode import decompress_file, rtcstats_file
from rtcstats_server.exceptions import NotFound
from rtcstats_server.forwarders.base import PayloadFormat, Upload
from rtcstats_server.storage.base import DumpStore


def _make(source: Path, target: Path, fmt: PayloadFormat) -> None:
    if fmt == "stored":
        decompress_file(source, target)
    else:
        rtcstats_file(source, target)


async def prepare(
    record: dict[str, Any], dumps: DumpStore, spool_dir: Path, fmt: PayloadFormat
) -> Upload:
    """The upload file of a session; the caller deletes it (``discard``) when done."""
    key = record.get("dump_key")
    session_id = str(record["id"])
    if not key:
        raise NotFound(f"session {session_id} has no stored dump")
    token = uuid.uuid4().hex[:8]
    compressed = spool_dir / f"{session_id}.{token}.zst"
    target = spool_dir / f"{session_id}.{token}.jsonl"
    try:
        handle = await asyncio.to_thread(compressed.open, "wb")
        try:
            async for chunk in dumps.read(key):
                await asyncio.to_thread(handle.write, chunk)
        finally:
            await asyncio.to_thread(handle.close)
        await asyncio.to_thread(_make, compressed, target, fmt)
        size = (await asyncio.to_thread(target.stat)).st_size
    except BaseException:
        await asyncio.to_thread(target.unlink, missing_ok=True)
        raise
    finally:
        await asyncio.to_thread(compressed.unlink, missing_ok=True)
    return Upload(session_id=session_id, path=target, size=size, file_name=f"{session_id}.jsonl")


async def discard(upload: Upload | None) -> None:
    if upload is not None:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(upload.path.unlink, missing_ok=True)
