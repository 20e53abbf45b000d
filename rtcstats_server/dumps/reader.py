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

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from rtcstats_server.dumps.codecs import (
    Compression,
    decompressed,
    dump_lines,
    file_chunks,
    sniff,
    split_lines,
)
from rtcstats_server.dumps.codes import method_name
from rtcstats_server.dumps.connections import PeerStates
from rtcstats_server.dumps.documents import Document, read_document
from rtcstats_server.dumps.envelopes import IDENTITY, is_envelope, open_envelope
from rtcstats_server.dumps.events import (
    BACKEND_STATS_METHOD,
    ERROR_METHOD,
    MAX_LINE_BYTES,
    STATS_METHOD,
    TOO_MANY_EVENTS,
    Event,
    ReadLimits,
    as_number,
    epoch_ms,
)
from rtcstats_server.dumps.layout import FILE_FORMAT, MAGIC, Scheme, pusher_protocol, scheme_of
from rtcstats_server.exceptions import DumpFormatError, DumpTooLarge, ProtocolViolation

__all__ = [
    "BACKEND_STATS_METHOD",
    "ERROR_METHOD",
    "MAX_LINE_BYTES",
    "STATS_METHOD",
    "DumpInfo",
    "DumpReader",
    "Event",
    "ReadLimits",
    "Span",
    "dump_lines",
    "epoch_ms",
    "file_chunks",
    "open_dump",
    "read_events",
]

#: What stored dumps are read with (ingest bounded them when they were written).
DEFAULT_LIMITS: Final = ReadLimits()
#: Damage messages kept in ``errors`` (each is also an event, however many there are).
MAX_ERRORS: Final = 1000
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
#: Layouts whose events are lines (the others are whole JSON documents).
LINE_LAYOUTS: Final = frozenset({"rtcstats-dump", "jitsi-disk", "jitsi-envelopes", "client-stream"})


@dataclass(slots=True)
class DumpInfo:
    """What the dump says about itself before its events.

    A file of 3.1 envelopes names no protocol: it is ``3.1_STANDARD`` until the first
    identity envelope read names a backend pusher (then ``3.1_JVB``, ...).
    """

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
    connection (for callers that only count or time events). ``lines()`` instead of
    iterating gives the event lines as stored, for callers that copy a dump.
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
        #: Damage found so far (the first ``MAX_ERRORS``).
        self.errors: list[str] = []
        self.lines_read = 0
        self.events = 0
        self._last_ts: float | None = None
        self._iterated = False
        self._held: list[tuple[int, bytes]] = []
        self._document: Document | None = None
        self._identity_seen = False
        compression, raw = sniff(chunks)
        self._chunks = _Pushback(decompressed(raw, compression, limits.max_expanded_bytes))
        self._line_source = split_lines(self._chunks, limits.max_line_bytes)
        self.info = self._read_header(compression)
        self.peers = PeerStates(self.info.scheme, limits.max_state_bytes)

    # -- opening -----------------------------------------------------------------------

    def _next_line(self) -> tuple[int, bytes] | None:
        """The next non-blank line and its number; damage below is recorded by callers."""
        for line in self._line_source:
            self.lines_read += 1
            if line.strip():
                return self.lines_read, line
        return None

    def _read_header(self, compression: Compression) -> DumpInfo:
        with _unreadable("not a dump we can read"):
            limit = self.limits.max_line_bytes
            if _is_document(self._chunks.head(limit), limit):
                return self._read_document(compression)
            first = self._next_line()
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
            return _described("jitsi-disk", meta, "jitsi", compression)
        if is_envelope(parsed):
            self._held.append((number, text))
            return DumpInfo("jitsi-envelopes", "jitsi", compression, "3.1_STANDARD")
        if isinstance(parsed, list) and len(parsed) >= 3:
            self._held.append((number, text))
            coded = type(parsed[0]) is int or parsed[0] == "g"
            scheme: Scheme = "rtcstats-js" if coded else "2015"
            return DumpInfo("client-stream", scheme, compression, None)
        raise DumpFormatError("not a dump we can read: the first line matches no known layout")

    def _rtcstats_header(self, compression: Compression) -> DumpInfo:
        with _unreadable("dump metadata unreadable"):
            second = self._next_line()
        if second is None:
            raise DumpFormatError("the dump ends before its metadata line")
        try:
            meta = orjson.loads(second[1])
        except orjson.JSONDecodeError:
            raise DumpFormatError("the dump's metadata line is not JSON") from None
        if not isinstance(meta, dict):
            raise DumpFormatError("the dump's metadata line is not an object")
        default: Scheme = "rtcstats-js" if meta.get("fileFormat") == FILE_FORMAT else "jitsi"
        return _described("rtcstats-dump", meta, default, compression)

    def _read_document(self, compression: Compression) -> DumpInfo:
        self._document = read_document(self._chunks, self.limits)
        return DumpInfo(self._document.layout, "jitsi", compression, None, self._document.metadata)

    # -- lines ---------------------------------------------------------------------------

    def _begin(self) -> None:
        if self._iterated:
            raise RuntimeError("a DumpReader can be read once")
        self._iterated = True

    def _count(self) -> None:
        self.events += 1
        limit = self.limits.max_events
        if limit is not None and self.events > limit:
            raise DumpTooLarge(TOO_MANY_EVENTS, f"the dump holds more than {limit} events")

    def _source_lines(self) -> Iterator[tuple[int, bytes]]:
        """The non-blank lines after the header, with their numbers; damage (a torn
        tail, a corrupt frame) raises ``DumpFormatError`` after the lines before it."""
        held, self._held = self._held, []
        yield from held
        while (item := self._next_line()) is not None:
            yield item

    def _carried(self, envelope: Any) -> str | None:
        """The line an envelope carries; the first identity may name a pusher."""
        if not self._identity_seen and type(envelope) is dict:
            if envelope.get("type") == IDENTITY:
                self._identity_seen = True
                data = envelope.get("data")
                if type(data) is dict:
                    protocol = pusher_protocol(data.get("applicationName"))
                    self.info.client_protocol = protocol or self.info.client_protocol
        return open_envelope(envelope)

    def lines(self) -> Iterator[bytes]:
        """The event lines as stored, for callers that copy a dump: byte for byte
        (without a trailing ``\\r``), after the header; of an envelope file, the line
        each envelope carries (a line that is no JSON object stays as it is, so its
        damage shows when it is read). Counted against ``max_events``; compressed
        damage raises ``DumpFormatError``. Only for line layouts (``LINE_LAYOUTS``)."""
        self._begin()
        if self.info.layout not in LINE_LAYOUTS:
            raise DumpFormatError(f"a {self.info.layout} export has no lines to copy")
        envelopes = self.info.layout == "jitsi-envelopes"
        for number, line in self._source_lines():
            line = line.rstrip(b"\r")
            if envelopes:
                try:
                    envelope = orjson.loads(line)
                except orjson.JSONDecodeError:
                    envelope = None
                if type(envelope) is dict:
                    try:
                        carried = self._carried(envelope)
                    except ProtocolViolation as exc:
                        self._record(f"line {number}: {exc.detail}")
                        continue
                    if carried is None:
                        continue
                    line = carried.encode()
            self._count()
            yield line

    # -- events --------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Event]:
        self._begin()
        for event in self._events():
            self._count()
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
        lines = self._source_lines()
        while True:
            try:
                item = next(lines, None)
            except DumpTooLarge:
                raise
            except DumpFormatError as exc:
                yield self._damage(str(exc), self.lines_read)
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
                    carried = self._carried(entry)
                    if carried is None:
                        continue
                    entry = orjson.loads(carried)
                event = self._event(entry, number)
            except (DumpFormatError, ProtocolViolation, orjson.JSONDecodeError) as exc:
                detail = exc.detail if isinstance(exc, ProtocolViolation) else str(exc)
                yield self._damage(f"line {number}: {detail}", number)
                continue
            if self.peers.notes:
                notes, self.peers.notes = self.peers.notes, []
                for note in notes:
                    yield self._damage(f"line {number}: {note}", number)
            yield event

    def _record(self, message: str) -> None:
        if self.strict:
            raise DumpFormatError(message)
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)

    def _damage(self, message: str, number: int) -> Event:
        self._record(message)
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
                value = self.peers.stats(pc_id, value)
        elif scheme == "rtcstats-js" and method in _DESCRIPTION_METHODS and self.decode:
            value = self.peers.description(pc_id, method, value, extra[0] if extra else None)
        return Event(when, method, pc_id, value, extra, seq, number)

    @property
    def error(self) -> str | None:
        """The first damage found, if any."""
        return self.errors[0] if self.errors else None


@contextmanager
def _unreadable(what: str) -> Iterator[None]:
    """Damage met while opening a dump, said as what could not be read (a cap passed
    is not damage: it stays ``DumpTooLarge``)."""
    try:
        yield
    except DumpTooLarge:
        raise
    except DumpFormatError as exc:
        raise DumpFormatError(f"{what}: {exc}") from None


def _described(
    layout: Layout, meta: dict[str, Any], default: Scheme, compression: Compression
) -> DumpInfo:
    """The info of a dump whose metadata comes before its events: its scheme is the
    one of the ``clientProtocol`` it names (``default`` when it names none)."""
    protocol = meta.get("clientProtocol")
    return DumpInfo(
        layout,
        scheme_of(protocol, default),
        compression,
        protocol if isinstance(protocol, str) else None,
        meta,
    )


# -- entry points ------------------------------------------------------------------------


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
    return not is_envelope(first)


def open_dump(
    path: Path, *, strict: bool = False, limits: ReadLimits = DEFAULT_LIMITS
) -> DumpReader:
    """A reader over a dump file (blocking I/O: call it from a worker thread)."""
    return DumpReader(file_chunks(path), strict=strict, limits=limits)


def read_events(chunks: Iterable[bytes], *, strict: bool = False) -> Iterator[Event]:
    """Just the events, for callers that need neither ``info`` nor ``errors``."""
    return iter(DumpReader(chunks, strict=strict))
