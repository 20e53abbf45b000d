"""Whole-document exports (chrome://webrtc-internals, the 2016 importer's JSON) read as
time-ordered events, in bounded memory whatever the document holds.

These exports are one JSON document each, not lines, and parsing one whole is a bomb:
8 KB of gzip holding one ``values`` string of millions of samples made 6 GB of
objects. So the document goes once through an incremental parser (ijson over yajl, in
C), and:

- no token (a string, a number) is buffered past ``max_line_bytes``: ``_TokenGuard``
  watches the bytes before the parser sees them and refuses the document first;
- no entry (a getUserMedia request, an update-log item, one stats series) is built
  past ``max_line_bytes`` either, nor nested deeper than ``_MAX_DEPTH`` (``_Walk``);
- events are staged as rows of a private temporary SQLite database (on disk, deleted
  when closed), so how many there are costs disk, not memory, and SQLite sorts them by
  time on disk too;
- webrtc-internals keeps getStats as one series per report property (``values``: a
  JSON array, usually inside a string, sampled evenly from ``startTime`` to
  ``endTime``). A peer connection's series are held compactly (each sample as its JSON
  text in one buffer per series, at most ``MAX_HELD_BYTES`` for one connection) until
  the connection ends, then put back together into one getStats result per sampling
  time, one result at a time, each staged as an event. Results count against
  ``max_events`` and their bytes against ``max_expanded_bytes``; a series that alone
  spans more results than ``max_events`` is refused before it is read.
"""

from __future__ import annotations

import heapq
import io
import re
import sqlite3
from array import array
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, Final, Literal

import ijson
import orjson

from rtcstats_server.dumps.events import (
    EXPANDED_TOO_LARGE,
    LINE_TOO_LONG,
    STATS_METHOD,
    TOO_MANY_EVENTS,
    Event,
    ReadLimits,
    as_number,
    epoch_ms,
)
from rtcstats_server.exceptions import DumpFormatError, DumpTooLarge

DocumentLayout = Literal["legacy-import", "webrtc-internals"]
JsonEvent = tuple[str, Any]

#: Deeper nesting is not an export (and would grow the parser's stack).
_MAX_DEPTH: Final = 64
#: Bytes the parser asks for at a time.
_READ: Final = 64 * 1024
#: A ``values`` string up to this long is parsed at once; longer ones too when they hold
#: only numbers and literals (at most 32 bytes of objects per 2 bytes of text), others
#: sample by sample.
_WHOLE_VALUES: Final = 256 * 1024
#: webrtc-internals samples of one report closer than this are one getStats result.
SAMPLE_GRID_MS: Final = 50
#: Samples of one peer connection's series held at once (their JSON text and index);
#: beyond, the export is refused as expanded_too_large.
MAX_HELD_BYTES: Final = 64 << 20
#: What one held series costs besides its samples (objects, keys), for that count.
_SERIES_COST: Final = 512
#: SQLite's page cache (KiB): what staging may hold in memory before it spills to disk.
_CACHE_KIB: Final = 16 * 1024
_ROWS_PER_INSERT: Final = 1000
_INTERNALS_EVENTS: Final = (
    "statechange",
    "icecandidate",
    "track",
    "negotiationneeded",
    "datachannel",
)
#: Order among events of the same time: as the exports list them, a connection's made-up
#: ``create`` before its first event.
_CREATE, _GUM, _LOG, _STATS = range(4)

# Inside a string: everything up to its closing quote (or the end of the chunk).
_STRING_BODY: Final = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)
# Outside strings: bytes that end a bare token (number, literal) → space, others → x.
_BARE_TABLE: Final = bytes(32 if chr(b) in '[]{},:" \t\r\n' else ord("x") for b in range(256))


def _too_long(limit: int, what: str) -> DumpTooLarge:
    return DumpTooLarge(LINE_TOO_LONG, f"{what} of the JSON export is longer than {limit} bytes")


class _TokenGuard:
    """A file for the parser over the decompressed chunks, refusing the document as soon
    as one token grows past ``limit`` bytes: yajl buffers a whole token before it hands
    it on, so without this a 2 GB string would be held whole."""

    def __init__(self, chunks: Iterator[bytes], limit: int) -> None:
        self._chunks = chunks
        self._limit = limit
        self._in_string = False
        self._escaped = False  # the string so far ends in a backslash that escapes
        self._token = 0  # bytes of the token being read

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""
        chunk = next(self._chunks, b"")
        if chunk:
            self._scan(chunk)
        return chunk

    def _scan(self, chunk: bytes) -> None:
        pos, end = 0, len(chunk)
        while pos < end:
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                    self._token += 1
                    pos += 1
                    continue
                match = _STRING_BODY.match(chunk, pos)
                stop = match.end() if match else pos
                self._token += stop - pos
                if self._token > self._limit:
                    raise _too_long(self._limit, "a string")
                if stop == end:
                    return
                if chunk[stop] == 0x5C:  # a backslash last in the chunk: escapes the next
                    self._escaped = True
                    self._token += 1
                    pos = stop + 1
                    continue
                self._in_string = False  # the closing quote
                self._token = 0
                pos = stop + 1
            else:
                quote = chunk.find(b'"', pos)
                stop = end if quote < 0 else quote
                self._bare(chunk[pos:stop])
                if quote < 0:
                    return
                self._in_string = True
                self._token = 0
                pos = quote + 1

    def _bare(self, segment: bytes) -> None:
        """Numbers and literals between strings: the run at the start continues the one
        the last chunk ended with, the run at the end may go on in the next chunk."""
        if not segment:
            return
        runs = segment.translate(_BARE_TABLE)
        if runs[:1] == b" ":
            self._token = 0
        pieces = runs.split()
        if not pieces:
            self._token = 0
            return
        first = len(pieces[0])
        if self._token + first > self._limit or max(map(len, pieces)) > self._limit:
            raise _too_long(self._limit, "a value")
        if len(pieces) > 1 or runs[-1:] == b" ":
            self._token = 0 if runs[-1:] == b" " else len(pieces[-1])
        else:
            self._token += first


class _Walk:
    """The parser's events, consumed by value: built (bounded) or skipped."""

    def __init__(self, events: Iterator[JsonEvent], limit: int) -> None:
        self._events = events
        self._limit = limit

    def next(self) -> JsonEvent:
        try:
            return next(self._events)
        except StopIteration:
            raise DumpFormatError("not a dump we can read: the JSON document ends early") from None

    def end(self) -> None:
        for _ in self._events:
            raise DumpFormatError("not a dump we can read: data after the JSON document")

    def value(self, first: JsonEvent) -> Any:
        """The value starting with ``first``, at most ``max_line_bytes`` of it."""
        budget = [self._limit]
        return self._build(first, budget, 0)

    def _spend(self, budget: list[int], cost: int) -> None:
        budget[0] -= cost
        if budget[0] < 0:
            raise _too_long(self._limit, "an entry")

    def _build(self, first: JsonEvent, budget: list[int], depth: int) -> Any:
        kind, value = first
        if kind == "start_map":
            _check_depth(depth)
            self._spend(budget, 16)
            built: dict[str, Any] = {}
            while True:
                kind, key = self.next()
                if kind == "end_map":
                    return built
                self._spend(budget, 8 + len(key))
                built[key] = self._build(self.next(), budget, depth + 1)
        if kind == "start_array":
            _check_depth(depth)
            self._spend(budget, 16)
            items: list[Any] = []
            while True:
                event = self.next()
                if event[0] == "end_array":
                    return items
                items.append(self._build(event, budget, depth + 1))
        self._spend(budget, 8 + (len(value) if kind == "string" else 0))
        return value

    def skip(self, first: JsonEvent) -> None:
        depth = 0
        event = first
        while True:
            if event[0] in ("start_map", "start_array"):
                depth += 1
                _check_depth(depth)
            elif event[0] in ("end_map", "end_array"):
                depth -= 1
            if depth == 0:
                return
            event = self.next()

    def items(self, first: JsonEvent) -> Iterator[JsonEvent]:
        """The first event of each item of an array (each to be consumed in turn)."""
        if first[0] != "start_array":
            self.skip(first)
            return
        while (event := self.next())[0] != "end_array":
            yield event

    def entries(self, first: JsonEvent) -> Iterator[tuple[str, JsonEvent]]:
        """Each key of an object and the first event of its value (consume it in turn)."""
        if first[0] != "start_map":
            self.skip(first)
            return
        while True:
            kind, key = self.next()
            if kind == "end_map":
                return
            yield str(key), self.next()


def _check_depth(depth: int) -> None:
    if depth >= _MAX_DEPTH:
        raise DumpFormatError(f"not a dump we can read: JSON nested deeper than {_MAX_DEPTH}")


def _json(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        raise DumpFormatError("not a dump we can read: a number outside 64 bits") from None


class _Stage:
    """The export's entries as rows of a temporary SQLite database (disk, not memory)."""

    def __init__(self, limits: ReadLimits) -> None:
        self.limits = limits
        # "" is a private temporary database, deleted when closed (also at a crash: the
        # file is unlinked as soon as it is open).
        self.db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        for pragma in (
            f"cache_size = -{_CACHE_KIB}",
            "temp_store = FILE",
            "journal_mode = OFF",
            "synchronous = OFF",
        ):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.executescript(
            """
            CREATE TABLE events (rank INTEGER, seq INTEGER, src TEXT, t REAL,
                                 method TEXT, pc TEXT, value BLOB);
            CREATE TABLE gum (seq INTEGER PRIMARY KEY, entry BLOB);
            CREATE TABLE pcs (idx INTEGER PRIMARY KEY, pc TEXT, info BLOB);
            BEGIN;
            """
        )
        self.seq = 0
        self.staged = 0  # events staged (getStats results are counted when rebuilt)
        self.expanded = 0  # bytes the staged events and samples add to a dump
        self._rows: list[tuple[Any, ...]] = []

    def close(self) -> None:
        self.db.close()

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def grow(self, size: int) -> None:
        self.expanded += size
        limit = self.limits.max_expanded_bytes
        if limit is not None and self.expanded > limit:
            raise DumpTooLarge(EXPANDED_TOO_LARGE, f"the export expands to more than {limit} bytes")

    def _count(self) -> None:
        self.staged += 1
        limit = self.limits.max_events
        if limit is not None and self.staged > limit:
            raise DumpTooLarge(TOO_MANY_EVENTS, f"the export holds more than {limit} events")

    def event(self, rank: int, src: str, event: Event) -> None:
        value = _json(event.value)
        self.encoded(rank, src, event.timestamp, event.method, event.pc_id, value)

    def encoded(
        self, rank: int, src: str, when: float, method: str, pc_id: str | None, value: bytes
    ) -> None:
        """An event whose value is JSON text already."""
        self._count()
        self.grow(len(value) + len(method) + 32)
        self._rows.append((rank, self.next_seq(), src, when, method, pc_id, value))
        if len(self._rows) >= _ROWS_PER_INSERT:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            self.db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", self._rows)
            self._rows.clear()

    def gum(self, entry: Any) -> None:
        self.db.execute("INSERT INTO gum VALUES (?, ?)", (self.next_seq(), _json(entry)))

    def gum_entries(self) -> Iterator[Any]:
        for (entry,) in self.db.execute("SELECT entry FROM gum ORDER BY seq"):
            yield orjson.loads(entry)

    def peer_connection(self, pc_id: str, info: dict[str, Any]) -> None:
        self.db.execute("INSERT INTO pcs (pc, info) VALUES (?, ?)", (pc_id, _json(info)))


class _Clock:
    """When the samples of series sharing start, end and count fall on the grid: one
    time per getStats result, and which sample each takes (of several samples closer
    than the grid, the last)."""

    def __init__(self, start: float, step: float, count: int) -> None:
        self.times = array("q")
        self.picks = array("q")
        last: int | None = None
        for index in range(count):
            when = round((start + index * step) / SAMPLE_GRID_MS) * SAMPLE_GRID_MS
            if when != last:
                self.times.append(when)
                self.picks.append(index)
                last = when
            else:
                self.picks[-1] = index
        self.series: list[_Series] = []

    @property
    def cost(self) -> int:
        return 16 * len(self.times)


class _Series:
    """One report property's picked samples, as JSON text in one buffer."""

    __slots__ = ("ends", "head", "kind", "prop", "report", "text")

    def __init__(self, report: str, kind: str | None, prop: str) -> None:
        self.report = report
        self.kind = kind
        self.head = b"," + orjson.dumps(prop) + b":"
        self.text = bytearray()
        self.ends = array("I")  # offsets within one series: held is far below 4 GiB

    def sample(self, position: int) -> bytes:
        start = self.ends[position - 1] if position else 0
        return bytes(self.text[start : self.ends[position]])


class _Connection:
    """A peer connection's series, held until it ends, then its getStats results."""

    def __init__(self, pc_id: str, limits: ReadLimits) -> None:
        self.pc_id = pc_id
        self.limits = limits
        self.clocks: dict[tuple[float, float, int], _Clock] = {}
        self.held = 0

    def add(self, name: str, series: Any) -> None:
        """One ``<report id>-<property>`` series. Names in brackets are rates the page
        derived itself, not stats: left out."""
        report_id, dash, prop = name.rpartition("-")
        if not dash or not report_id or not prop or prop.startswith("["):
            return
        if not isinstance(series, dict):
            return
        start, end = epoch_ms(series.get("startTime")), epoch_ms(series.get("endTime"))
        if start is None or end is None:
            return
        count, samples = _samples(series.get("values"), self.limits.max_line_bytes)
        if count == 0:
            return
        step = (end - start) / (count - 1) if count > 1 else 0.0
        spans = count if abs(step) >= SAMPLE_GRID_MS else abs(end - start) / SAMPLE_GRID_MS
        limit = self.limits.max_events
        if limit is not None and spans > limit:
            raise DumpTooLarge(
                TOO_MANY_EVENTS, f"series {name[:100]!r} alone spans more than {limit} results"
            )
        clock = self.clocks.get((start, step, count))
        if clock is None:
            clock = self.clocks[(start, step, count)] = _Clock(start, step, count)
            self._hold(clock.cost)
        kind = series.get("statsType")
        one = _Series(report_id, kind if isinstance(kind, str) else None, prop)
        picks = clock.picks
        position = 0
        for index, value in enumerate(samples):
            if position == len(picks):
                break
            if index == picks[position]:
                one.text += _json(value)
                one.ends.append(len(one.text))
                position += 1
        if position < len(picks):
            return  # fewer samples than counted: malformed, left out
        self._hold(len(one.text) + 4 * len(one.ends) + _SERIES_COST)
        clock.series.append(one)

    def _hold(self, size: int) -> None:
        self.held += size
        if self.held > MAX_HELD_BYTES:
            raise DumpTooLarge(
                EXPANDED_TOO_LARGE,
                f"the stats series of peer connection {self.pc_id[:100]!r} hold more than "
                f"{MAX_HELD_BYTES} bytes of samples",
            )

    def results(self) -> Iterator[tuple[int, bytes]]:
        """(time, getStats result as JSON text), in time order; a report's ``type`` is
        its first series' ``statsType``, a property named twice keeps the last."""
        clocks = [clock for clock in self.clocks.values() if clock.series]
        limit = self.limits.max_line_bytes
        due = [(clock.times[0], order, 0) for order, clock in enumerate(clocks)]
        heapq.heapify(due)
        while due:
            when = due[0][0]
            at: list[tuple[int, int]] = []
            while due and due[0][0] == when:
                _, order, position = heapq.heappop(due)
                at.append((order, position))
                if position + 1 < len(clocks[order].times):
                    following = (clocks[order].times[position + 1], order, position + 1)
                    heapq.heappush(due, following)
            stamp = str(when).encode()
            reports: dict[str, list[bytes]] = {}
            size = 0
            for order, position in sorted(at):
                for one in clocks[order].series:
                    parts = reports.get(one.report)
                    if parts is None:
                        key = orjson.dumps(one.report)
                        parts = reports[one.report] = [
                            key,
                            b':{"id":',
                            key,
                            b',"timestamp":',
                            stamp,
                        ]
                        if one.kind is not None:
                            parts += (b',"type":', orjson.dumps(one.kind))
                        size += 2 * len(key) + 48
                    sample = one.sample(position)
                    parts += (one.head, sample)
                    size += len(one.head) + len(sample)
                    if size > limit:
                        raise _too_long(limit, "a getStats result rebuilt")
            body = b"},".join(b"".join(parts) for parts in reports.values())
            yield when, b"{" + body + b'},"timestamp":' + stamp + b"}"


class Document:
    """A read export: its layout and metadata now, its events (time order) once.

    Use it as a context manager, or ``close`` it: that deletes the staged rows."""

    def __init__(self, layout: DocumentLayout, metadata: dict[str, Any], stage: _Stage) -> None:
        self.layout = layout
        self.metadata = metadata
        self._stage = stage
        self._src = "legacy" if layout == "legacy-import" else "internals"

    def events(self) -> Iterator[Event]:
        rows = self._stage.db.execute(
            "SELECT t, method, pc, value FROM events WHERE src = ? ORDER BY t, rank, seq",
            (self._src,),
        )
        for when, method, pc_id, value in rows:
            yield Event(float(when), method, pc_id, orjson.loads(value))

    def close(self) -> None:
        self._stage.close()

    def __enter__(self) -> Document:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# -- reading -----------------------------------------------------------------------------


def read_document(chunks: Iterator[bytes], limits: ReadLimits) -> Document:
    """Read a whole export (decompressed chunks) under ``limits``; DumpFormatError when it
    is not one we know, DumpTooLarge past a cap."""
    stage = _Stage(limits)
    try:
        guard = _TokenGuard(chunks, limits.max_line_bytes)
        parsed = ijson.basic_parse(guard, use_float=True, buf_size=_READ)
        reading = _Reading(_Walk(parsed, limits.max_line_bytes), stage)
        try:
            layout, metadata = reading.run()
        except ijson.JSONError as exc:
            raise DumpFormatError(f"not a dump we can read: invalid JSON ({exc})") from None
        except ValueError as exc:  # e.g. a number of more digits than Python converts
            raise DumpFormatError(f"not a dump we can read: {exc}") from None
    except BaseException:
        stage.close()
        raise
    return Document(layout, metadata, stage)


class _Reading:
    """One pass over the document: each entry staged as it is read."""

    def __init__(self, walk: _Walk, stage: _Stage) -> None:
        self.walk = walk
        self.stage = stage
        self.limits = stage.limits

    def run(self) -> tuple[DocumentLayout, dict[str, Any]]:
        walk = self.walk
        first = walk.next()
        if first[0] != "start_map":
            raise DumpFormatError("not a dump we can read: the JSON document is not an object")
        seen: set[str] = set()
        top: dict[str, Any] = {}
        for key, value in walk.entries(first):
            if key == "getUserMedia" and value[0] == "start_array":
                seen.add(key)
                for item in walk.items(value):
                    self.stage.gum(walk.value(item))
            elif key == "PeerConnections" and value[0] == "start_map":
                seen.add(key)
                for pc_id, connection in walk.entries(value):
                    self._internals_connection(pc_id, connection)
            elif key == "peerConnections" and value[0] == "start_map":
                seen.add(key)
                for pc_id, items in walk.entries(value):
                    for item in walk.items(items):
                        self._legacy_item(pc_id, walk.value(item))
            elif key in ("UserAgent", "userAgent", "url"):
                top[key] = walk.value(value)
            else:
                walk.skip(value)
        walk.end()
        if "peerConnections" in seen:
            for entry in self.stage.gum_entries():
                self._legacy_item(None, entry)
            self.stage.flush()
            return "legacy-import", {k: top[k] for k in ("url", "userAgent") if k in top}
        if seen & {"PeerConnections", "getUserMedia"}:
            for entry in self.stage.gum_entries():
                self._internals_gum(entry)
            metadata: dict[str, Any] = {k: top[k] for k in ("UserAgent", "url") if k in top}
            self._create_connections(metadata)
            return "webrtc-internals", metadata
        raise DumpFormatError("not a dump we can read: unknown JSON document")

    # -- the 2016 dump importer: lists of {time, type, value} per connection ------------------

    def _legacy_item(self, pc_id: str | None, item: Any) -> None:
        if not isinstance(item, dict):
            return
        when = epoch_ms(item.get("time")) or 0.0
        method = str(item.get("type"))
        if method == "getstats":
            method = STATS_METHOD
        rank = _GUM if pc_id is None else _LOG
        self.stage.event(rank, "legacy", Event(when, method, pc_id, item.get("value")))

    # -- chrome://webrtc-internals ----------------------------------------------------------

    def _internals_gum(self, item: Any) -> None:
        if not isinstance(item, dict):
            return
        kind = str(item.get("request_type") or "getUserMedia")
        base = f"navigator.mediaDevices.{kind}"
        when = as_number(item.get("timestamp")) or 0.0
        if "stream_id" in item:
            event = Event(when, base + "OnSuccess", None, item)
        elif "error" in item:
            event = Event(when, base + "OnFailure", None, item.get("error"))
        else:
            event = Event(when, base, None, item)
        self.stage.event(_GUM, "internals", event)

    def _internals_connection(self, pc_id: str, first: JsonEvent) -> None:
        walk = self.walk
        if first[0] != "start_map":
            walk.skip(first)
            return
        info: dict[str, Any] = {}
        connection = _Connection(pc_id, self.limits)
        for key, value in walk.entries(first):
            if key == "updateLog":
                for item in walk.items(value):
                    self._log_item(pc_id, walk.value(item))
            elif key == "stats":
                for name, series in walk.entries(value):
                    connection.add(name, walk.value(series))
            elif key in ("rtcConfiguration", "constraints", "url"):
                info[key] = walk.value(value)
            else:
                walk.skip(value)
        for when, result in connection.results():
            self.stage.encoded(_STATS, "internals", float(when), STATS_METHOD, pc_id, result)
        self.stage.peer_connection(pc_id, info)

    def _log_item(self, pc_id: str, item: Any) -> None:
        if not isinstance(item, dict):
            return
        method = str(item.get("type"))
        if method.endswith(_INTERNALS_EVENTS) and not method.startswith("on"):
            method = "on" + method
        # Chrome writes ``time`` as a local-time string without a zone (unreadable) and,
        # since 2023, ``timestamp`` in epoch ms: that one first.
        when = as_number(item.get("timestamp")) or epoch_ms(item.get("time")) or 0.0
        self.stage.event(_LOG, "internals", Event(when, method, pc_id, item.get("value")))

    def _create_connections(self, metadata: dict[str, Any]) -> None:
        """A ``create`` for each connection whose log has none, at its first event; the
        first connection's page is the export's when it names none. Staged rows still
        pending are written first: the query must see every event (a small export's
        are all pending, and its connections were created at 0)."""
        stage = self.stage
        stage.flush()
        created = stage.db.execute(
            """
            SELECT p.pc, p.info, a.first, a.created FROM pcs p LEFT JOIN (
                SELECT pc, MIN(CASE WHEN t > 0 THEN t END) AS first,
                       MAX(method = 'create') AS created
                FROM events WHERE src = 'internals' GROUP BY pc
            ) a ON a.pc = p.pc ORDER BY p.idx
            """
        ).fetchall
        for pc_id, info, first, done in created():
            connection = orjson.loads(info)
            if isinstance(connection.get("url"), str) and "url" not in metadata:
                metadata["url"] = connection["url"]
            if done:
                continue
            config = {
                k: connection[k] for k in ("rtcConfiguration", "constraints") if k in connection
            }
            stage.event(_CREATE, "internals", Event(first or 0.0, "create", pc_id, config))
        stage.flush()


def _samples(values: Any, limit: int) -> tuple[int, Iterable[Any]]:
    """How many samples a series has, and the samples, parsed only when iterated (so a
    series refused for its count is never parsed)."""
    if isinstance(values, list):
        return len(values), values
    if not isinstance(values, str):
        return 0, ()
    data = values.encode()
    text = data.strip()
    if text[:1] == b"[" and text.count(b"[") == 1 and b"{" not in text and b'"' not in text:
        # Numbers and literals only: commas count them (a malformed text yields no
        # sample: the series is left out); parsed at once, at most 32 bytes of objects
        # per 2 bytes of text.
        listed = text[1:].removesuffix(b"]").strip()
        return (listed.count(b",") + 1 if listed else 0), _parsed(data)
    if len(data) <= _WHOLE_VALUES:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            return 0, ()
        return (len(parsed), parsed) if isinstance(parsed, list) else (0, ())

    def walk() -> tuple[_Walk, JsonEvent]:
        events = ijson.basic_parse(io.BytesIO(data), use_float=True, buf_size=_READ)
        inner = _Walk(events, limit)
        return inner, inner.next()

    try:
        inner, first = walk()
        if first[0] != "start_array":
            return 0, ()
        count = 0
        for item in inner.items(first):
            inner.skip(item)
            count += 1
        inner.end()
    except (ijson.JSONError, ValueError):
        return 0, ()

    def each() -> Iterator[Any]:
        again, start = walk()
        for item in again.items(start):
            yield again.value(item)

    return count, each()


def _parsed(data: bytes) -> Iterator[Any]:
    """The samples of a flat ``values`` text; malformed: none (as if absent)."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    if isinstance(parsed, list):
        yield from parsed
