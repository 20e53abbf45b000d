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

Reading streams: memory is bounded by one line (or one zstd block) plus the last
getStats result per peer connection; whole-document exports are the exception (one
JSON document) and are refused above ``MAX_DOCUMENT_BYTES``.

Damage does not stop the reader. A line that is not JSON, a getStats delta that
does not apply, or a torn compressed tail is recorded in ``errors`` and yields a
``dumpError`` event in place, so callers get everything before (and, for a bad line,
after) the damage. ``strict=True`` raises ``DumpFormatError`` instead. A dump whose
beginning matches no layout raises ``DumpFormatError`` when opened.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import orjson
import zstandard

from rtcstats_server.dumps.codes import method_name
from rtcstats_server.dumps.descriptions import DescriptionState
from rtcstats_server.dumps.getstats import LegacyStats, Reports, RtcstatsJsStats
from rtcstats_server.dumps.layout import MAGIC
from rtcstats_server.exceptions import DumpFormatError

#: The method of every getStats event, whatever the dialect called it.
STATS_METHOD: Final = "getStats"
#: The method of the marker event that stands where the dump was damaged.
ERROR_METHOD: Final = "dumpError"
#: The method of a backend pusher's (JVB, Jicofo) statistics object.
BACKEND_STATS_METHOD: Final = "backendStats"

#: A longer line is damage, not data (the collector refuses 1 MiB messages).
MAX_LINE_BYTES: Final = 64 << 20
#: Largest whole-document export we parse (they cannot be streamed).
MAX_DOCUMENT_BYTES: Final = 256 << 20

_CHUNK: Final = 256 * 1024
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


@dataclass(slots=True)
class Event:
    """One thing that happened in the client, as the client reported it.

    ``value`` is what the client sent, except: getStats carries the full report dict
    ``{stats id: report}`` (rtcstats-js ids stay the short "0", "1", ... the client
    chose; reports are shared between events and must not be modified), and
    rtcstats-js descriptions carry their full SDP. ``extra`` holds what rtcstats-js
    sends between the value and the time (request ids such as ``"8-2"``, the reason
    of a getStats call); ``seq`` is the 3.1 sequence number; ``line`` the 1-based line
    of the decompressed dump.
    """

    timestamp: float
    method: str
    pc_id: str | None
    value: Any
    extra: tuple[Any, ...] = ()
    seq: int | None = None
    line: int = 0

    @property
    def is_stats(self) -> bool:
        return self.method == STATS_METHOD

    @property
    def stats(self) -> Reports:
        """The full reports of a getStats event (empty for any other event)."""
        return self.value if self.method == STATS_METHOD and isinstance(self.value, dict) else {}


@dataclass(slots=True)
class DumpInfo:
    """What the dump says about itself before its events."""

    layout: Layout
    scheme: Scheme
    compression: Literal["zstd", "gzip", "none"]
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


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def epoch_ms(value: object) -> float | None:
    """A time as clients write it (epoch ms, or an ISO 8601 string) in epoch ms."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000
        except ValueError:
            return None
    return None


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
    """Concatenated frames, decompressed as they arrive; a torn last frame is an error."""
    dctx = zstandard.ZstdDecompressor()
    dobj = dctx.decompressobj()
    in_frame = False
    for chunk in chunks:
        data = chunk
        while data:
            in_frame = True
            try:
                out = dobj.decompress(data)
            except zstandard.ZstdError as exc:
                raise DumpFormatError(f"zstd data is corrupt: {exc}") from None
            if out:
                yield out
            if not dobj.eof:
                break
            data = dobj.unused_data
            dobj = dctx.decompressobj()
            in_frame = False
    if in_frame:
        raise DumpFormatError("zstd data ends inside a frame (truncated dump)")


def _gzip_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    dobj = zlib.decompressobj(zlib.MAX_WBITS | 16)
    in_member = False
    for chunk in chunks:
        data = chunk
        while data:
            in_member = True
            try:
                out = dobj.decompress(data)
            except zlib.error as exc:
                raise DumpFormatError(f"gzip data is corrupt: {exc}") from None
            if out:
                yield out
            if not dobj.eof:
                break
            data = dobj.unused_data
            dobj = zlib.decompressobj(zlib.MAX_WBITS | 16)
            in_member = False
    if in_member:
        raise DumpFormatError("gzip data ends inside a member (truncated dump)")


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Lines without their newline; a line longer than MAX_LINE_BYTES is an error."""
    pending: list[bytes] = []
    pending_size = 0
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
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
            if pending_size > MAX_LINE_BYTES:
                raise DumpFormatError(f"a line is longer than {MAX_LINE_BYTES} bytes")
    if pending:
        yield b"".join(pending)


# -- the reader ------------------------------------------------------------------------


class DumpReader:
    """Iterate to get the events; ``info`` is known as soon as the reader exists."""

    def __init__(self, chunks: Iterable[bytes], *, strict: bool = False) -> None:
        self.strict = strict
        self.errors: list[str] = []
        self.lines = 0
        self._source = iter(chunks)
        self._first: list[bytes] = []
        self._stats: dict[str | None, RtcstatsJsStats | LegacyStats] = {}
        self._descriptions: dict[str | None, DescriptionState] = {}
        self._last_ts: float | None = None
        self._iterated = False
        compression = self._sniff()
        raw: Iterator[bytes] = self._replayed()
        if compression == "zstd":
            raw = _zstd_chunks(raw)
        elif compression == "gzip":
            raw = _gzip_chunks(raw)
        self._line_source = _lines(raw)
        self._held: list[tuple[int, bytes]] = []
        self._doc_events: Iterator[Event] = iter(())
        self.info = self._read_header(compression)

    # -- opening -----------------------------------------------------------------------

    def _sniff(self) -> Literal["zstd", "gzip", "none"]:
        head = b""
        while len(head) < 4:
            chunk = next(self._source, None)
            if chunk is None:
                break
            if chunk:
                self._first.append(chunk)
                head += chunk
        if head.startswith(_ZSTD_MAGIC):
            return "zstd"
        if head.startswith(_GZIP_MAGIC):
            return "gzip"
        return "none"

    def _replayed(self) -> Iterator[bytes]:
        yield from self._first
        self._first = []
        yield from self._source

    def _next_line(self) -> tuple[int, bytes] | None:
        """The next non-blank line and its number; damage below is recorded by callers."""
        for line in self._line_source:
            self.lines += 1
            if line.strip():
                return self.lines, line
        return None

    def _read_header(self, compression: Literal["zstd", "gzip", "none"]) -> DumpInfo:
        try:
            first = self._next_line()
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
        if stripped.startswith(b"{") and (parsed is None or isinstance(parsed, dict)):
            return self._document(stripped, compression)
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

    def _rtcstats_header(self, compression: Literal["zstd", "gzip", "none"]) -> DumpInfo:
        try:
            second = self._next_line()
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

    def _document(self, first: bytes, compression: Literal["zstd", "gzip", "none"]) -> DumpInfo:
        parts = [first]
        size = len(first)
        for line in self._line_source:
            self.lines += 1
            parts.append(line)
            size += len(line) + 1
            if size > MAX_DOCUMENT_BYTES:
                raise DumpFormatError(f"JSON export larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            doc = orjson.loads(b"\n".join(parts))
        except orjson.JSONDecodeError as exc:
            raise DumpFormatError(f"not a dump we can read: invalid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise DumpFormatError("not a dump we can read: the JSON document is not an object")
        if isinstance(doc.get("peerConnections"), dict):
            self._doc_events = _legacy_import_events(doc)
            meta = {k: doc[k] for k in ("url", "userAgent") if k in doc}
            return DumpInfo("legacy-import", "jitsi", compression, None, meta)
        internals = doc.get("PeerConnections")
        if isinstance(internals, dict) or isinstance(doc.get("getUserMedia"), list):
            self._doc_events = _internals_events(doc)
            meta = {k: doc[k] for k in ("UserAgent", "url") if k in doc}
            return DumpInfo("webrtc-internals", "jitsi", compression, None, meta)
        raise DumpFormatError("not a dump we can read: unknown JSON document")

    # -- events --------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Event]:
        if self._iterated:
            raise RuntimeError("a DumpReader can be iterated once")
        self._iterated = True
        if self.info.layout in ("legacy-import", "webrtc-internals"):
            yield from self._doc_events
            return
        envelopes = self.info.layout == "jitsi-envelopes"
        held, self._held = self._held, []
        pending = iter(held)
        while True:
            item = next(pending, None)
            if item is None:
                try:
                    item = self._next_line()
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
            when = _number(entry.get("timestamp"))
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
            delta = _number(rest[-1]) if rest else None
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
            value = self._decoder(pc_id).apply(value)
        elif scheme == "rtcstats-js" and method in _DESCRIPTION_METHODS:
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


def _ordered(events: list[Event]) -> Iterator[Event]:
    events.sort(key=lambda event: event.timestamp)
    yield from events


def _legacy_import_events(doc: dict[str, Any]) -> Iterator[Event]:
    """The 2016 dump importer's JSON: lists of ``{time, type, value}`` per connection."""
    events: list[Event] = []
    sources: list[tuple[str | None, Any]] = [(None, doc.get("getUserMedia"))]
    sources += list(doc["peerConnections"].items())
    for pc_id, items in sources:
        if not isinstance(items, list):
            continue
        for item in items:
            if not isinstance(item, dict):
                continue
            when = epoch_ms(item.get("time")) or 0.0
            method = str(item.get("type"))
            if method == "getstats":
                method = STATS_METHOD
            events.append(Event(when, method, pc_id, item.get("value")))
    return _ordered(events)


_INTERNALS_EVENTS = ("statechange", "icecandidate", "track", "negotiationneeded", "datachannel")


def _internals_events(doc: dict[str, Any]) -> Iterator[Event]:
    """A chrome://webrtc-internals export: getUserMedia requests and update logs."""
    events: list[Event] = []
    for item in doc.get("getUserMedia") or []:
        if not isinstance(item, dict):
            continue
        kind = str(item.get("request_type") or "getUserMedia")
        base = f"navigator.mediaDevices.{kind}"
        when = _number(item.get("timestamp")) or 0.0
        if "stream_id" in item:
            events.append(Event(when, base + "OnSuccess", None, item))
        elif "error" in item:
            events.append(Event(when, base + "OnFailure", None, item.get("error")))
        else:
            events.append(Event(when, base, None, item))
    connections = doc.get("PeerConnections")
    for pc_id, connection in connections.items() if isinstance(connections, dict) else []:
        log = connection.get("updateLog") if isinstance(connection, dict) else None
        for item in log or []:
            if not isinstance(item, dict):
                continue
            method = str(item.get("type"))
            if method.endswith(_INTERNALS_EVENTS) and not method.startswith("on"):
                method = "on" + method
            when = epoch_ms(item.get("time")) or 0.0
            events.append(Event(when, method, str(pc_id), item.get("value")))
    return _ordered(events)


# -- entry points ------------------------------------------------------------------------


def file_chunks(path: Path, size: int = _CHUNK) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            yield chunk


def open_dump(path: Path, *, strict: bool = False) -> DumpReader:
    """A reader over a dump file (blocking I/O: call it from a worker thread)."""
    return DumpReader(file_chunks(path), strict=strict)


def read_events(chunks: Iterable[bytes], *, strict: bool = False) -> Iterator[Event]:
    """Just the events, for callers that need neither ``info`` nor ``errors``."""
    return iter(DumpReader(chunks, strict=strict))
