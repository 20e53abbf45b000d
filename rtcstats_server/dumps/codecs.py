"""Bytes of a dump to its text and back: compression, frames, lines.

The one place that knows how a dump is compressed. Everything that reads dump bytes
(the reader, uploads, replay, downloads, forwarding, crash repair) comes through here:

- ``sniff``: zstd, gzip or plain, by the first bytes (never by a file name);
- ``Decompressor``: decompression fed in arbitrary chunks, handing on at most
  ``CHUNK`` bytes at a time (one zstd block of a few bytes can stand for 128 KiB, so
  a small input can hold gigabytes); zstd frames and gzip members concatenate;
- ``compress_frame`` / ``iter_frames``: what we write, one independent zstd frame per
  flush, so a file cut anywhere still decodes up to its last whole frame and files
  (or segments) concatenate;
- ``dump_lines``: any dump's decompressed lines under a line cap.

Decompression uses one library (``backports.zstd``, the standard library's
``compression.zstd`` from Python 3.14); compression keeps ``zstandard``'s contexts,
which write the content size into each frame.
"""

from __future__ import annotations

import sys
import threading
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final, Literal

import zstandard

from rtcstats_server.dumps.events import EXPANDED_TOO_LARGE, LINE_TOO_LONG, ReadLimits
from rtcstats_server.exceptions import DumpFormatError, DumpTooLarge

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

#: Decompressed bytes handed on at a time, and file bytes read at a time.
CHUNK: Final = 256 * 1024
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC: Final = b"\x1f\x8b"

Compression = Literal["zstd", "gzip", "none"]

_local = threading.local()


# -- compression -------------------------------------------------------------------------


def _compressor(level: int) -> zstandard.ZstdCompressor:
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
    """``data`` as one independent zstd frame."""
    return _compressor(level).compress(data)


# -- sniffing and decompression ------------------------------------------------------------


def sniff(chunks: Iterable[bytes]) -> tuple[Compression, Iterator[bytes]]:
    """The compression of a dump, by its first bytes, and all its chunks again."""
    source = iter(chunks)
    first: list[bytes] = []
    head = b""
    while len(head) < len(ZSTD_MAGIC):
        chunk = next(source, None)
        if chunk is None:
            break
        first.append(chunk)
        head += chunk

    def replayed() -> Iterator[bytes]:
        yield from first
        first.clear()
        yield from source

    if head.startswith(ZSTD_MAGIC):
        return "zstd", replayed()
    if head.startswith(GZIP_MAGIC):
        return "gzip", replayed()
    return "none", replayed()


class Decompressor:
    """Decompresses one stream fed in arbitrary chunks: concatenated zstd frames,
    concatenated gzip members, or plain bytes (handed on as they come)."""

    __slots__ = ("_dobj", "_open", "compression")

    def __init__(self, compression: Compression) -> None:
        self.compression = compression
        self._dobj: zstd.ZstdDecompressor | zlib._Decompress | None = self._fresh()
        #: Inside a frame (member) whose end has not come yet.
        self._open = False

    def _fresh(self) -> zstd.ZstdDecompressor | zlib._Decompress | None:
        if self.compression == "zstd":
            return zstd.ZstdDecompressor()
        if self.compression == "gzip":
            return zlib.decompressobj(zlib.MAX_WBITS | 16)
        return None

    def pieces(self, data: bytes) -> Iterator[bytes]:
        """What ``data`` decompresses to, at most ``CHUNK`` bytes at a time; corrupt
        input raises ``DumpFormatError``."""
        dobj = self._dobj
        if dobj is None:
            if data:
                yield data
            return
        try:
            if isinstance(dobj, zstd.ZstdDecompressor):
                yield from self._zstd(dobj, data)
            else:
                yield from self._gzip(dobj, data)
        except zstd.ZstdError as exc:
            raise DumpFormatError(f"zstd data is corrupt: {exc}") from None
        except zlib.error as exc:
            raise DumpFormatError(f"gzip data is corrupt: {exc}") from None

    def _zstd(self, dobj: zstd.ZstdDecompressor, data: bytes) -> Iterator[bytes]:
        while True:
            if data:
                self._open = True
            elif dobj.needs_input:
                return
            out = dobj.decompress(data, CHUNK)  # b"": output held back from the last call
            data = b""
            if out:
                yield out
            if dobj.eof:
                data = dobj.unused_data
                dobj = self._dobj = zstd.ZstdDecompressor()
                self._open = False
                if not data:
                    return

    def _gzip(self, dobj: zlib._Decompress, data: bytes) -> Iterator[bytes]:
        while data:
            self._open = True
            out = dobj.decompress(data, CHUNK)
            if out:
                yield out
            if dobj.eof:
                data = dobj.unused_data
                dobj = self._dobj = zlib.decompressobj(zlib.MAX_WBITS | 16)
                self._open = False
            else:
                data = dobj.unconsumed_tail

    def feed(self, data: bytes) -> bytes:
        """All of what ``data`` decompresses to (for our own dumps, whose size ingest
        or an upload's caps bounded when they were written)."""
        return b"".join(self.pieces(data))

    def finish(self) -> None:
        """Raise ``DumpFormatError`` when the stream ended inside a frame (a torn tail)."""
        if self._open:
            what = "a frame" if self.compression == "zstd" else "a member"
            raise DumpFormatError(f"{self.compression} data ends inside {what} (truncated dump)")


def decompressed(
    chunks: Iterable[bytes], compression: Compression, limit: int | None = None
) -> Iterator[bytes]:
    """The decompressed bytes of ``chunks``, at most ``CHUNK`` at a time; a torn tail
    raises ``DumpFormatError`` (after everything before it), more than ``limit`` bytes
    ``DumpTooLarge``."""
    decompressor = Decompressor(compression)
    total = 0
    for chunk in chunks:
        for piece in decompressor.pieces(chunk):
            total += len(piece)
            if limit is not None and total > limit:
                raise DumpTooLarge(
                    EXPANDED_TOO_LARGE, f"the dump is larger than {limit} bytes decompressed"
                )
            yield piece
    decompressor.finish()


# -- frames ----------------------------------------------------------------------------------


def iter_frames(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, int]]:
    """Decompressed content and compressed length of each whole zstd frame.

    A torn last frame (a crash mid-write) ends the iteration without error; use
    ``whole_frames_length`` to find where the good part of a file ends.
    """
    data = memoryview(b"".join(chunks))
    offset = 0
    while offset < len(data):
        try:
            size = zstd.get_frame_size(data[offset:])
            content = zstd.decompress(data[offset : offset + size])
        except zstd.ZstdError:
            return
        yield content, size
        offset += size


def whole_frames_length(data: bytes) -> int:
    """Bytes of ``data`` covered by complete frames (the rest is a torn tail)."""
    return sum(length for _, length in iter_frames([data]))


# -- lines -----------------------------------------------------------------------------------


def split_lines(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """Lines without their newline; a line longer than ``limit`` is refused as soon as
    that many bytes of it came, so at most ``limit`` plus one chunk is ever held."""
    pending: list[bytes] = []
    pending_size = 0
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            if pending_size + end - start > limit:
                raise line_too_long(limit)
            if pending:
                pending.append(chunk[start:end])
                yield b"".join(pending)
                pending.clear()
                pending_size = 0
            else:
                yield chunk[start:end]
            start = end + 1
        if start < len(chunk):
            pending.append(chunk[start:])
            pending_size += len(chunk) - start
            if pending_size > limit:
                raise line_too_long(limit)
    if pending:
        yield b"".join(pending)


def line_too_long(limit: int) -> DumpTooLarge:
    return DumpTooLarge(LINE_TOO_LONG, f"a line is longer than {limit} bytes")


def dump_lines(chunks: Iterable[bytes], limits: ReadLimits | None = None) -> Iterator[bytes]:
    """The decompressed lines of any dump (any compression), without their newline, as
    they are, under the caps of ``limits``: for callers that copy lines byte for byte."""
    limits = limits or ReadLimits()
    compression, raw = sniff(chunks)
    return split_lines(
        decompressed(raw, compression, limits.max_expanded_bytes), limits.max_line_bytes
    )


def file_chunks(path: Path, size: int = CHUNK) -> Iterator[bytes]:
    """A file's bytes, ``size`` at a time (blocking: from a worker thread)."""
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            yield chunk
