"""The one writer of dump files: lines in, independent zstd frames appended to a file.

Used by live sessions (``flush``, async) and by the encoders, crash repair and uploads
(``write_frame``, blocking, from a worker thread). Lines are buffered in memory and
written as one frame per flush. Live flushes that are small are
compressed on the event loop (a few microseconds); large ones go to a worker
thread so no session's burst stalls the others. Flushes of one writer never
overlap, so frames stay in order. The file is opened for each frame and closed
again: a live session then costs no file descriptor between flushes, so one
process holds 10,000 sessions within a 20,000 open-files limit (reopening an
existing file costs about 2 µs, a frame is written at most every 100 entries or
every couple of seconds).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Final

from rtcstats_server.dumps.codecs import compress_frame

#: Buffers at least this large are compressed and written off the event loop. A thread
#: hop costs about 80 µs of CPU, more than compressing 100 KiB inline (about 200 µs at
#: level 3, a stall the loop can take), so only the 1 MiB size-triggered flushes move.
OFFLOAD_BYTES = 256 * 1024
#: Raw bytes per frame that blocking writers (encoders) let a buffer reach.
FRAME_BYTES: Final = 1 << 20


class DumpWriter:
    __slots__ = (
        "_buffer",
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
        self._buffer: list[str] = []
        self._lock: asyncio.Lock | None = None
        self.buffered_bytes = 0
        self.raw_bytes = 0
        self.compressed_bytes = 0

    def append(self, line: str) -> None:
        """Buffer one line; it is encoded with the rest of its frame, once per flush.

        ``buffered_bytes`` counts characters (equal to bytes for the ASCII that JSON
        clients send): it only decides when to flush; ``raw_bytes`` is exact. Bytes
        that are not UTF-8 (copied from an upload) travel as surrogate escapes and are
        written back as they were.
        """
        self._buffer.append(line)
        self.buffered_bytes += len(line) + 1

    def write_line(self, line: str) -> None:
        """Buffer one line; past ``FRAME_BYTES`` buffered, write them as a frame (blocking)."""
        self.append(line)
        if self.buffered_bytes >= FRAME_BYTES:
            self.write_frame()

    def _take(self) -> tuple[list[str], int, bytes]:
        lines, self._buffer = self._buffer, []
        pending, self.buffered_bytes = self.buffered_bytes, 0
        return lines, pending, ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")

    def _give_back(self, lines: list[str], pending: int) -> None:
        self._buffer[:0] = lines
        self.buffered_bytes += pending

    def write_frame(self) -> None:
        """Write everything appended so far as one frame, blocking (worker threads)."""
        if not self._buffer:
            return
        lines, pending, data = self._take()
        try:
            written = self._append_frame(data)
        except OSError:
            self._give_back(lines, pending)
            raise
        self._wrote(data, written)

    def _wrote(self, data: bytes, written: int) -> None:
        self.raw_bytes += len(data)
        self.compressed_bytes += written

    def _append_frame(self, data: bytes) -> int:
        """Append one frame, or nothing: a failed write (a full disk) is cut back off,
        so the frames before it still decode and a later retry appends cleanly."""
        frame = compress_frame(data, self.level)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                view = memoryview(frame)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                if self.fsync:
                    os.fsync(fd)
            except OSError:
                os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)
        return len(frame)

    def writes_inline(self) -> bool:
        """Whether ``flush`` would write on the event loop without waiting: no flush
        under way, no fsync, and a buffer below ``OFFLOAD_BYTES`` (characters: a
        buffer of multi-byte text may encode a little past it, a short stall)."""
        return (
            not self.fsync
            and self.buffered_bytes < OFFLOAD_BYTES
            and (self._lock is None or not self._lock.locked())
        )

    async def flush(self) -> None:
        """Write everything appended so far as one frame; durable on return.

        On an OSError the lines stay buffered (ahead of any appended meanwhile) and
        the error propagates: nothing is lost that a later flush could still write.
        """
        if not self._buffer:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._buffer:
                return
            lines, pending, data = self._take()
            offload = len(data) >= OFFLOAD_BYTES or self.fsync
            try:
                if offload:
                    written = await asyncio.to_thread(self._append_frame, data)
                else:
                    written = self._append_frame(data)
            except OSError:
                self._give_back(lines, pending)
                raise
            self._wrote(data, written)

    async def close(self) -> None:
        await self.flush()

    def drop_buffered(self) -> None:
        """Forget lines that could not be written (the session is stored as it is)."""
        self._buffer.clear()
        self.buffered_bytes = 0

    def discard(self) -> None:
        """Drop the file of a session that never held an event."""
        self._buffer.clear()
        self.path.unlink(missing_ok=True)
