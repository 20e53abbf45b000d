"""Streams one session's events into a file of independent zstd frames.

Lines are buffered in memory and written as one frame per flush. Small flushes are
compressed on the event loop (a few microseconds); large ones go to a worker
thread so no session's burst stalls the others. Flushes of one writer never
overlap, so frames stay in order.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from rtcstats_server.dumps.frames import compress_frame

#: Buffers at least this large are compressed and written off the event loop.
OFFLOAD_BYTES = 64 * 1024


class DumpWriter:
    __slots__ = (
        "_buffer",
        "_fd",
        "_lock",
        "buffered_bytes",
        "compressed_bytes",
        "fsync",
        "level",
        "path",
        "raw_bytes",
    )

    def __init__(self, path: Path, level: int, fsync: bool) -> None:
        self.path = path
        self.level = level
        self.fsync = fsync
        self._buffer: list[bytes] = []
        self._fd: int | None = None
        self._lock: asyncio.Lock | None = None
        self.buffered_bytes = 0
        self.raw_bytes = 0
        self.compressed_bytes = 0

    def append(self, line: str) -> int:
        data = line.encode() + b"\n"
        self._buffer.append(data)
        self.buffered_bytes += len(data)
        return len(data)

    def _write_frame(self, data: bytes) -> int:
        frame = compress_frame(data, self.level)
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        view = memoryview(frame)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if self.fsync:
            os.fsync(self._fd)
        return len(frame)

    async def flush(self) -> None:
        """Write everything appended so far as one frame; durable on return."""
        if not self._buffer:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._buffer:
                return
            data = b"".join(self._buffer)
            self._buffer.clear()
            self.buffered_bytes = 0
            if len(data) >= OFFLOAD_BYTES or self.fsync:
                written = await asyncio.to_thread(self._write_frame, data)
            else:
                written = self._write_frame(data)
            self.raw_bytes += len(data)
            self.compressed_bytes += written

    async def close(self) -> None:
        await self.flush()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            await asyncio.to_thread(os.close, fd)

    def discard(self) -> None:
        """Drop the file of a session that never held an event."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._buffer.clear()
        self.path.unlink(missing_ok=True)
