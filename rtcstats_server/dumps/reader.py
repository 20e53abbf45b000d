"""Any dump we read, of any dialect, as one stream of events.

Everything that reads dumps (quality summary, forwarder conversion, viewer) goes
through here, so each of them sees one model: absolute timestamps in epoch
milliseconds, full method names, and for getStats the full report dict of the peer
connection at that moment, whichever delta scheme the client used (see getstats.py).

What is recognised, by content rather than by file name:

- our dumps and rtcstats.com dumps: ``RTCStatsDump``, a metadata line whose
  ``clientProtocol`` says the dialect (``rtcstats#*``: relative times, codes and
  compressed getStats; ``3.1_*`` and pushers: absolute times and a seq; ``2.0``:
  absolute times, full names), the events, a close line;
- jitsi rtcstats-server on-disk dumps (first line ``["connectionInfo", ...]``);
- 3.1 websocket envelopes as a pusher or client sent them, one per line;
- raw client streams (arrays, as the websocket carried them);
- whole-document exports (the 2016 dump importer's JSON, chrome://webrtc-internals);
- each of them plain, zstd (any number of frames) or gzip compressed.

Reading streams: memory is bounded by one line (``ReadLimits.max_line_bytes``) plus
the last getStats result per peer connection, whatever the compression ratio:
decompression hands on at most ``_CHUNK`` bytes at a time. Whole-document exports are
read by documents.py, also in bounded memory. Past a cap of ``ReadLimits`` the reader
raises ``DumpTooLarge`` (never recorded as damage): uploads answer it with 413.

Damage does not stop the reader. A line that is not JSON, a getStats delta that
does not apply, or a torn compressed tail is recorded in ``errors`` and yields a
``dumpError`` event in place, so callers get everything before (and, for a bad line,
after) the damage. ``strict=True`` raises ``DumpFormatError`` instead. A dump whose
beginning matches no layout raises ``DumpFormatError`` when opened.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from rtcstats_server.dumps.codes import method_name
from rtcstats_server.dumps.descriptions import DescriptionState
from rtcstats_server.dumps.documents import Document, read_document
from rtcstats_server.dumps.events import (
    BACKEND_STATS_METHOD,
    ERROR_METHOD,
    EXPANDED_TOO_LARGE,
    LINE_TOO_LONG,
    MAX_LINE_BYTES,
    STATS_METHOD,
    TOO_MANY_EVENTS,
    Event,
    ReadLimits,
    as_number,
    epoch_ms,
)
from rtcstats_server.dumps.getstats import LegacyStats, RtcstatsJsStats
from rtcstats_server.dumps.layout import MAGIC
from rtcstats_server.exceptions import DumpFormatError, DumpTooLarge

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

__all__ = [
    "BACKEND_STATS_METHOD",
    "ERROR_METHOD",
    "MAX_LINE_BYTES",
    "STATS_METHOD",
    "DumpInfo",
    "DumpReader",
    "Event",
    "ReadLimits",
    "dump_lines",
    "epoch_ms",
    "file_chunks",
    "open_dump",
    "read_events",
]

_CHUNK: Final = 256 * 1024
#: What stored dumps are read with (ingest bounded them when they were written).
DEFAULT_LIMITS: Final = ReadLimits()
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC: Final = b"\x1f\x8b"
_ENVELOPE_TYPES: Final = frozenset({"identity", "stats-entry", "keepalive", "close", "sn"})
_DESCRIPTION_METHODS: Final = frozenset(
    {
        "createOfferOnSuccess",
        "createAnswerOnSuccess",
        "setLocalDescription",
        "setLocalDescriptionOnSuccess",
        "setLocalDescriptionOnFailure",
        "setRemoteDescription",
        "setRemoteDescriptionOnSuccess",
        "setRemoteDescriptionOnFailure",
    }
)

Layout = Literal[
    "rtcstats-dump",
    "jitsi-disk",
    "jitsi-envelopes",
    "client-stream",
    "legacy-import",
    "webrtc-internals",
]
Scheme = Literal["rtcstats-js", "jitsi", "2015"]
Compression = Literal["zstd", "gzip", "none"]


@dataclass(slots=True)
class DumpInfo:
    """What the dump says about itself before its events."""

    layout: Layout
    scheme: Scheme
    compression: Compression
    client_protocol: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def user_agent(self) -> str | None:
        for key in ("userAgent", "UserAgent", "user_agent"):
            value = self.metadata.get(key)
            if isinstance(value, str):
                return value
        return None

    @property
    def relative_time(self) -> bool:
        return self.scheme == "rtcstats-js"


#: Epoch milliseconds below this (1973) are not moments: relative times, zeros, garbage.
PLAUSIBLE_MS: Final = 1e11


@dataclass(slots=True)
class Span:
    """The first and last moments of a dump's events, fed one event at a time.

    Damage markers and implausible timestamps are skipped, so a torn or odd line does
    not stretch a session to 1970.
    """

    first: float | None = None
    last: float | None = None

    def add(self, event: Event) -> None:
        when = event.timestamp
        if event.method == ERROR_METHOD or not when >= PLAUSIBLE_MS:
            return
        self.first = when if self.first is None else min(self.first, when)
        self.last = when if self.last is None else max(self.last, when)

    @property
    def duration_s(self) -> float | None:
        if self.first is None or self.last is None:
            return None
        return round((self.last - self.first) / 1000, 3)


# -- bytes → decompressed bytes --------------------------------------------------------


def _zstd_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Concatenated frames, decompressed as they arrive, at most ``_CHUNK`` bytes at a
    time (one zstd block of a few bytes can stand for 128 KiB, so a small input can
    hold gigabytes); a torn last frame is an error."""
    dobj = zstd.ZstdDecompressor()
    in_frame = False
    pending = b""
    while True:
        if dobj.needs_input:
            if not pending:
                pending = next(chunks, b"")
                if not pending:
                    break
            data, pending = pending, b""
            in_frame = True
        else:
            data = b""  # output still held back from the last input
        try:
            out = dobj.decompress(data, _CHUNK)
        except zstd.ZstdError as exc:
            raise DumpFormatError(f"zstd data is corrupt: {exc}") from None
        if out:
            yield out
        if dobj.eof:
            pending = dobj.unused_data + pending
            dobj = zstd.ZstdDecompressor()
            in_frame = False
    if in_frame:
        raise DumpFormatError("zstd data ends inside a frame (truncated dump)")


def _gzip_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Concatenated gzip members, at most ``_CHUNK`` bytes at a time (see above)."""
    dobj = zlib.decompressobj(zlib.MAX_WBITS | 16)
    in_member = False
    for chunk in chunks:
        data = chunk
        while data:
            in_member = True
            try:
                out = dobj.decompress(data, _CHUNK)
            except zlib.error as exc:
                raise DumpFormatError(f"gzip data is corrupt: {exc}") from None
            if out:
                yield out
            if dobj.eof:
                data = dobj.unused_data
                dobj = zlib.decompressobj(zlib.MAX_WBITS | 16)
                in_member = False
            else:
                data = dobj.unconsumed_tail
    if in_member:
        raise DumpFormatError("gzip data ends inside a member (truncated dump)")


def _capped(chunks: Iterator[bytes], limit: int | None) -> Iterator[bytes]:
    """The chunks, until more than ``limit`` bytes came (None: no cap)."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if limit is not None and total > limit:
            raise DumpTooLarge(
                EXPANDED_TOO_LARGE, f"the dump is larger than {limit} bytes decompressed"
            )
        yield chunk


def _lines(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
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
                raise _too_long(limit)
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
                raise _too_long(limit)
    if pending:
        yield b"".join(pending)


def _too_long(limit: int) -> DumpTooLarge:
    return DumpTooLarge(LINE_TOO_LONG, f"a line is longer than {limit} bytes")


class _Pushback:
    """An iterator of chunks that takes back what was peeked at."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._back: list[bytes] = []

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return self._back.pop() if self._back else next(self._chunks)

    def push(self, chunks: list[bytes]) -> None:
        self._back.extend(reversed(chunks))

    def head(self, limit: int) -> bytes:
        """The bytes up to the end of the first non-blank line (or ``limit`` of them,
        or all there is); they stay to be read again."""
        taken: list[bytes] = []
        size = 0
        seen_text = False
        for chunk in self:
            taken.append(chunk)
            size += len(chunk)
            if not seen_text:
                text = chunk.lstrip()
                if not text:
                    continue
                seen_text = True
                if b"\n" in text:
                    break
            elif b"\n" in chunk:
                break
            if size > limit:
                break
        self.push(taken)
        return b"".join(taken)


# -- the reader ------------------------------------------------------------------------


class DumpReader:
    """Iterate to get the events; ``info`` is known as soon as the reader exists.

    A JSON export is read whole when the reader is made (documents.py): iterate the
    reader, or ``close`` it, to delete what it staged. ``decode=False``: getStats and
    rtcstats-js descriptions keep the values as sent, and nothing is kept per peer
    connection (for callers that only count or time events).
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        strict: bool = False,
        limits: ReadLimits = DEFAULT_LIMITS,
        decode: bool = True,
    ) -> None:
        self.strict = strict
        self.limits = limits
        self.decode = decode
        self.errors: list[str] = []
        self.lines = 0
        self.events = 0
        self._stats: dict[str | None, RtcstatsJsStats | LegacyStats] = {}
        self._descriptions: dict[str | None, DescriptionState] = {}
        self._last_ts: float | None = None
        self._iterated = False
        self._held: list[tuple[int, bytes]] = []
        self._document: Document | None = None
        compression, raw = _sniffed(chunks)
        self._chunks = _Pushback(_decompressed(raw, compression, limits))
        self._line_source = _lines(self._chunks, limits.max_line_bytes)
        self.info = self._read_header(compression)

    # -- opening -----------------------------------------------------------------------

    def _next_line(self) -> tuple[int, bytes] | None:
        """The next non-blank line and its number; damage below is recorded by callers."""
        for line in self._line_source:
            self.lines += 1
            if line.strip():
                return self.lines, line
        return None

    def _read_header(self, compression: Compression) -> DumpInfo:
        try:
            limit = self.limits.max_line_bytes
            if _is_document(self._chunks.head(limit), limit):
                return self._read_document(compression)
            first = self._next_line()
        except DumpTooLarge:
            raise
        except DumpFormatError as exc:
            raise DumpFormatError(f"not a dump we can read: {exc}") from None
        if first is None:
            raise DumpFormatError("the dump is empty")
        number, text = first
        stripped = text.strip()
        if stripped == MAGIC.encode():
            return self._rtcstats_header(compression)
        parsed: Any = None
        try:
            parsed = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list) and parsed and parsed[0] == "connectionInfo":
            meta = parsed[2] if len(parsed) > 2 and isinstance(parsed[2], dict) else {}
            protocol = meta.get("clientProtocol")
            return DumpInfo(
                "jitsi-disk",
                self._scheme_for(protocol, "jitsi"),
                compression,
                protocol if isinstance(protocol, str) else None,
                meta,
            )
        if isinstance(parsed, dict) and str(parsed.get("type")) in _ENVELOPE_TYPES:
            self._held.append((number, stripped))
            return DumpInfo("jitsi-envelopes", "jitsi", compression, "3.1_STANDARD")
        if isinstance(parsed, list) and len(parsed) >= 3:
            self._held.append((number, stripped))
            coded = type(parsed[0]) is int or parsed[0] == "g"
            scheme: Scheme = "rtcstats-js" if coded else "2015"
            return DumpInfo("client-stream", scheme, compression, None)
        raise DumpFormatError("not a dump we can read: the first line matches no known layout")

    @staticmethod
    def _scheme_for(protocol: object, default: Scheme) -> Scheme:
        if isinstance(protocol, str):
            if protocol.startswith("rtcstats#"):
                return "rtcstats-js"
            if protocol == "2.0":
                return "2015"
            return "jitsi"
        return default

    def _rtcstats_header(self, compression: Compression) -> DumpInfo:
        try:
            second = self._next_line()
        except DumpTooLarge:
            raise
        except DumpFormatError as exc:
            raise DumpFormatError(f"dump metadata unreadable: {exc}") from None
        if second is None:
            raise DumpFormatError("the dump ends before its metadata line")
        try:
            meta = orjson.loads(second[1])
        except orjson.JSONDecodeError:
            raise DumpFormatError("the dump's metadata line is not JSON") from None
        if not isinstance(meta, dict):
            raise DumpFormatError("the dump's metadata line is not an object")
        protocol = meta.get("clientProtocol")
        default: Scheme = "rtcstats-js" if meta.get("fileFormat") == 3 else "jitsi"
        return DumpInfo(
            "rtcstats-dump",
            self._scheme_for(protocol, default),
            compression,
            protocol if isinstance(protocol, str) else None,
            meta,
        )

    def _read_document(self, compression: Compression) -> DumpInfo:
        self._document = read_document(self._chunks, self.limits)
        return DumpInfo(self._document.layout, "jitsi", compression, None, self._document.metadata)

    # -- events --------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Event]:
        if self._iterated:
            raise RuntimeError("a DumpReader can be iterated once")
        self._iterated = True
        limit = self.limits.max_events
        for event in self._events():
            self.events += 1
            if limit is not None and self.events > limit:
                raise DumpTooLarge(TOO_MANY_EVENTS, f"the dump holds more than {limit} events")
            yield event

    def close(self) -> None:
        """Delete what a JSON export staged (iterating to the end does it too)."""
        if self._document is not None:
            self._document.close()

    def _events(self) -> Iterator[Event]:
        if self._document is not None:
            with self._document:
                yield from self._document.events()
            return
        envelopes = self.info.layout == "jitsi-envelopes"
        held, self._held = self._held, []
        pending = iter(held)
        while True:
            item = next(pending, None)
            if item is None:
                try:
                    item = self._next_line()
                except DumpTooLarge:
                    raise
                except DumpFormatError as exc:
                    yield self._damage(str(exc), self.lines)
                    return
                if item is None:
                    return
            number, text = item
            try:
                entry = orjson.loads(text)
            except orjson.JSONDecodeError:
                yield self._damage(f"line {number} is not JSON", number)
                continue
            try:
                if envelopes:
                    entry = _unwrap(entry)
                    if entry is None:
                        continue
                event = self._event(entry, number)
            except DumpFormatError as exc:
                yield self._damage(f"line {number}: {exc}", number)
                continue
            yield event

    def _damage(self, message: str, number: int) -> Event:
        self.errors.append(message)
        if self.strict:
            raise DumpFormatError(message)
        when = self._last_ts if self._last_ts is not None else 0.0
        return Event(when, ERROR_METHOD, None, message, line=number)

    def _event(self, entry: Any, number: int) -> Event:
        if type(entry) is dict:
            when = as_number(entry.get("timestamp"))
            when = when if when is not None else (self._last_ts or 0.0)
            self._last_ts = when
            return Event(when, BACKEND_STATS_METHOD, None, entry, line=number)
        if type(entry) is not list or len(entry) < 3:
            raise DumpFormatError("an event is an array [method, pcId, value, ...]")
        raw_method, pc, value = entry[0], entry[1], entry[2]
        rest = entry[3:]
        scheme = self.info.scheme
        pc_id = pc if pc is None or type(pc) is str else str(pc)
        seq: int | None = None
        extra: tuple[Any, ...] = ()
        if scheme == "rtcstats-js":
            method = method_name(raw_method)
            delta = as_number(rest[-1]) if rest else None
            extra = tuple(rest[:-1])
            if self._last_ts is None:
                when = delta if delta is not None else 0.0
            else:
                when = self._last_ts + (delta or 0.0)
        else:
            method = raw_method if type(raw_method) is str else str(raw_method)
            stamp = epoch_ms(rest[0]) if rest else None
            when = stamp if stamp is not None else (self._last_ts or 0.0)
            if len(rest) > 1 and type(rest[1]) is int:
                seq = rest[1]
                extra = tuple(rest[2:])
            else:
                extra = tuple(rest[1:])
        self._last_ts = when
        if method == "getstats" or method == STATS_METHOD:
            method = STATS_METHOD
            if self.decode:
                value = self._decoder(pc_id).apply(value)
        elif scheme == "rtcstats-js" and method in _DESCRIPTION_METHODS and self.decode:
            state = self._descriptions.get(pc_id)
            if state is None:
                state = self._descriptions[pc_id] = DescriptionState()
            value = state.apply(method, value, extra[0] if extra else None)
        return Event(when, method, pc_id, value, extra, seq, number)

    def _decoder(self, pc_id: str | None) -> RtcstatsJsStats | LegacyStats:
        decoder = self._stats.get(pc_id)
        if decoder is None:
            scheme = self.info.scheme
            if scheme == "rtcstats-js":
                decoder = RtcstatsJsStats()
            else:
                decoder = LegacyStats(absent_removed=scheme == "jitsi")
            self._stats[pc_id] = decoder
        return decoder

    @property
    def error(self) -> str | None:
        """The first damage found, if any."""
        return self.errors[0] if self.errors else None


def _unwrap(envelope: Any) -> Any:
    """The dump line inside a 3.1 envelope; None for control messages."""
    if type(envelope) is not dict:
        raise DumpFormatError("3.1 envelopes are JSON objects")
    kind = envelope.get("type")
    data = envelope.get("data")
    if kind == "stats-entry":
        if type(data) is not str:
            raise DumpFormatError("stats-entry data must be a JSON string")
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise DumpFormatError("stats-entry data is not JSON") from None
    if kind == "identity":
        if type(data) is dict:
            return ["identity", None, data, data.get("timestamp")]
        return data
    return None


# -- entry points ------------------------------------------------------------------------


def _sniffed(chunks: Iterable[bytes]) -> tuple[Compression, Iterator[bytes]]:
    """The compression of a dump, by its first bytes, and all its chunks again."""
    source = iter(chunks)
    first: list[bytes] = []
    head = b""
    while len(head) < 4:
        chunk = next(source, None)
        if chunk is None:
            break
        first.append(chunk)
        head += chunk

    def replayed() -> Iterator[bytes]:
        yield from first
        first.clear()
        yield from source

    if head.startswith(_ZSTD_MAGIC):
        return "zstd", replayed()
    if head.startswith(_GZIP_MAGIC):
        return "gzip", replayed()
    return "none", replayed()


def _decompressed(
    chunks: Iterator[bytes], compression: Compression, limits: ReadLimits
) -> Iterator[bytes]:
    if compression == "zstd":
        chunks = _zstd_chunks(chunks)
    elif compression == "gzip":
        chunks = _gzip_chunks(chunks)
    return _capped(chunks, limits.max_expanded_bytes)


def _is_document(head: bytes, limit: int) -> bool:
    """A JSON export starts with ``{``, as does a file of 3.1 envelopes (one per line),
    told apart by the first line: a complete envelope, with its ``type``."""
    text = head.lstrip()
    if not text.startswith(b"{"):
        return False
    line, newline, _ = text.partition(b"\n")
    if not newline and len(line) > limit:
        return True  # longer than any line may be: only an export can go on like this
    try:
        first = orjson.loads(line)
    except orjson.JSONDecodeError:
        return True
    return not (isinstance(first, dict) and str(first.get("type")) in _ENVELOPE_TYPES)


def dump_lines(chunks: Iterable[bytes], limits: ReadLimits = DEFAULT_LIMITS) -> Iterator[bytes]:
    """The decompressed lines of any dump (any compression), without their newline, as
    they are, under the caps of ``limits``: for callers that copy lines byte for byte."""
    compression, raw = _sniffed(chunks)
    return _lines(_decompressed(raw, compression, limits), limits.max_line_bytes)


def file_chunks(path: Path, size: int = _CHUNK) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            yield chunk


def open_dump(
    path: Path, *, strict: bool = False, limits: ReadLimits = DEFAULT_LIMITS
) -> DumpReader:
    """A reader over a dump file (blocking I/O: call it from a worker thread)."""
    return DumpReader(file_chunks(path), strict=strict, limits=limits)


def read_events(chunks: Iterable[bytes], *, strict: bool = False) -> Iterator[Event]:
    """Just the events, for callers that need neither ``info`` nor ``errors``."""
    return iter(DumpReader(chunks, strict=strict))
