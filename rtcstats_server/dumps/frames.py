"""zstd frame helpers shared by the writer, crash recovery and readers.

Each flush is one independent zstd frame, so a file cut anywhere still decodes up
to its last whole frame, and files (or segments) concatenate.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

import zstandard

_local = threading.local()


def compressor(level: int) -> zstandard.ZstdCompressor:
    """One compression context per thread and level: contexts are large and not
    thread-safe, so sessions share them instead of holding one each."""
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    ctx = cache.get(level)
    if ctx is None:
        ctx = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return ctx


def compress_frame(data: bytes, level: int) -> bytes:
    return compressor(level).compress(data)


def iter_frames(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, int]]:
    """Decompressed content and compressed length of each whole frame.

    A torn last frame (a crash mid-write) ends the iteration without error; use
    ``whole_frames_length`` to find where the good part of a file ends.
    """
    dctx = zstandard.ZstdDecompressor()
    pending = b""
    source = iter(chunks)
    exhausted = False
    while True:
        if not pending:
            if exhausted:
                return
            try:
                pending = next(source)
            except StopIteration:
                return
            continue
        dobj = dctx.decompressobj()
        out: list[bytes] = []
        consumed = 0
        data = pending
        while True:
            try:
                out.append(dobj.decompress(data))
            except zstandard.ZstdError:
                return
            if dobj.eof:
                rest = dobj.unused_data
                consumed += len(data) - len(rest)
                pending = rest
                yield b"".join(out), consumed
                break
            consumed += len(data)
            try:
                data = next(source)
            except StopIteration:
                exhausted = True
                return  # torn frame at the end
        if not pending and exhausted:
            return


def whole_frames_length(data: bytes) -> int:
    """Bytes of ``data`` covered by complete frames (the rest is a torn tail)."""
    return sum(length for _, length in iter_frames([data]))


class FrameStreamDecoder:
    """Decompresses a stream of concatenated frames fed in arbitrary chunks."""

    def __init__(self) -> None:
        self._dctx = zstandard.ZstdDecompressor()
        self._dobj = self._dctx.decompressobj()

    def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        while chunk:
            out.append(self._dobj.decompress(chunk))
            if not self._dobj.eof:
                break
            chunk = self._dobj.unused_data
            self._dobj = self._dctx.decompressobj()
        return b"".join(out)
