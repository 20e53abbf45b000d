"""Any dump we read, written again in one of the two layouts we hand out.

- ``to_ours``: our stored layout (``RTCStatsDump``, a metadata line, the events, a
  close line, in zstd frames), so everything downstream handles an uploaded session
  exactly like a streamed one. Lines stay byte for byte wherever the source has
  lines: rtcstats and our dumps after their metadata line, jitsi on-disk dumps after
  their ``connectionInfo`` line, raw client streams every line, 3.1 envelopes the
  line each carries (what ingest stores for a live 3.1 client). Whole-document
  exports (chrome://webrtc-internals, the 2016 importer JSON) have no lines: their
  events are written from the reader's model in the 3.1 on-disk form (absolute
  times, full method names, getStats as full reports, a report absent from a result
  is gone).
- ``to_rtcstats``: ``fileFormat: 3``, the rtcstats-js layout rtcstats.com and the
  rtcstats tools parse: times relative to the previous event, methods as codes,
  getStats compressed against the previous result of the same peer connection, and
  the values those tools read by position in rtcstats-js's shapes (jsforms.py).
  Sessions of every other dialect (3.1 clients and pushers, 2.0, the exports) are
  re-encoded event by event from the reader's model, so every legacy delta scheme
  comes out in one form; a dump already in that dialect is copied as it is
  (``write_rtcstats``: the entry point for any file). Handing a jitsi dump out under
  its ``RTCStatsDump`` header as it is would make those tools read its absolute times
  as deltas (dates in 2071).

The getStats encoder is lossless for what the rtcstats scheme can say: report ids
become "0", "1", ... (and every ``…Id`` property whose value is a report's id with
them, so nothing needs reversing), property names and types become table codes,
unchanged properties and reports are left out, removed reports are ``null``, and a
report whose timestamp is not the newest keeps its own ``t``. Unlike rtcstats-js we
keep certificate reports and obsolete properties: the goal is the same reports, not
a smaller file. What the scheme cannot say (a property or a nested key that
disappears from a live report) is counted in ``lossy_reports``.

Blocking (files, compression, parsing): run it in a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import orjson

from rtcstats_server.dumps.codecs import CHUNK, Decompressor, file_chunks, sniff
from rtcstats_server.dumps.codes import METHOD_CODES, STAT_PROPERTY_CODES, STAT_TYPE_CODES
from rtcstats_server.dumps.connections import (
    CELL_BYTES,
    CONNECTION_BYTES,
    REPORT_BYTES,
    LruStates,
)
from rtcstats_server.dumps.events import (
    ERROR_METHOD,
    STATS_METHOD,
    Event,
    epoch_ms,
)
from rtcstats_server.dumps.getstats import Report, Reports
from rtcstats_server.dumps.jsforms import CREATE, JsForms
from rtcstats_server.dumps.layout import (
    FILE_FORMAT,
    close_line,
    default_protocol,
    header_lines,
    is_session_close,
)
from rtcstats_server.dumps.privacy import mask_line, mask_text
from rtcstats_server.dumps.reader import (
    LINE_LAYOUTS,
    PLAUSIBLE_MS,
    DumpInfo,
    DumpReader,
    open_dump,
)
from rtcstats_server.dumps.writer import DumpWriter
from rtcstats_server.exceptions import DumpFormatError

#: Dialect written in the metadata of dumps whose events we re-encode (see above).
EVENTS_PROTOCOL: Final = "3.1_STANDARD"
#: Close code of the line we add when a dump has none (a normal end).
CLOSE_CODE: Final = 1000
#: Stats ids one encoder maps before it starts its numbering over (a real connection
#: names a few hundred in its life; a client renaming them forever would grow it).
MAX_IDS: Final = 20_000


# -- to our layout ------------------------------------------------------------------------


@dataclass
class Encoded:
    """What ``to_ours`` wrote: its metadata line's object, and the bytes before
    compression."""

    metadata: dict[str, Any]
    raw_bytes: int = 0


def own_metadata(info: DumpInfo) -> dict[str, Any]:
    """The metadata a dump brings of its own (an rtcstats header, jitsi's
    ``connectionInfo``), kept in ours."""
    return info.metadata if info.layout in ("rtcstats-dump", "jitsi-disk") else {}


def _our_header(info: DumpInfo) -> dict[str, Any]:
    """What our metadata line says of events taken from a dump of ``info``'s layout."""
    header: dict[str, Any] = {}
    if info.layout not in LINE_LAYOUTS:
        if info.user_agent:
            header["userAgent"] = info.user_agent
        if isinstance(info.metadata.get("url"), str):
            header["url"] = info.metadata["url"]
        header["clientProtocol"] = EVENTS_PROTOCOL
        header["convertedFrom"] = info.layout
    elif info.layout == "client-stream":
        header["clientProtocol"] = default_protocol(info.scheme)
        if info.relative_time:
            header["fileFormat"] = FILE_FORMAT
    elif info.layout == "jitsi-envelopes":
        header["clientProtocol"] = info.client_protocol  # known once the events were read
    return header


def _event_line(event: Event) -> str:
    """An event of an export in the 3.1 on-disk form."""
    method = "getstats" if event.method == STATS_METHOD else event.method
    when = event.timestamp
    stamp = int(when) if when.is_integer() else when
    return orjson.dumps([method, event.pc_id, event.value, stamp]).decode()


def _event_lines(reader: DumpReader) -> Iterator[str]:
    """The events as lines of our layout (``surrogateescape``: bytes kept as they are)."""
    if reader.info.layout in LINE_LAYOUTS:
        for line in reader.lines():
            yield line.decode("utf-8", "surrogateescape")
    else:
        for event in reader:
            if event.method != ERROR_METHOD:
                yield _event_line(event)


def _missing_close(last: str | None, relative: bool) -> str | None:
    """The close line to append after ``last`` when it is not one."""
    try:
        entry = orjson.loads(last) if last else None
    except orjson.JSONDecodeError:
        entry = None
    if is_session_close(entry):
        return None
    stamp = None
    if not relative and isinstance(entry, list) and len(entry) > 3:
        stamp = epoch_ms(entry[3])
    return close_line(CLOSE_CODE, stamp, relative=relative, last_ms=None)


def to_ours(
    reader: DumpReader, target: Path, extra: dict[str, Any], *, level: int, mask: bool
) -> Encoded:
    """Write what ``reader`` reads to ``target`` in our layout; ``extra`` goes into its
    metadata line over what the source says. ``mask``: IP addresses are masked as
    ingest masks them. Caps of the reader's ``ReadLimits`` raise ``DumpTooLarge``."""
    # The metadata line goes first but is known last (a pusher names itself in its
    # identity): events are staged in a scratch file of frames meanwhile.
    scratch = target.with_suffix(".events")
    scratch.unlink(missing_ok=True)
    target.unlink(missing_ok=True)
    try:
        events = DumpWriter(scratch, level, fsync=False)
        last: str | None = None
        for line in _event_lines(reader):
            if mask:
                line = mask_line(line) or line
            events.write_line(line)
            if line.strip():
                last = line
        close = _missing_close(last, reader.info.relative_time)
        if close is not None:
            events.write_line(close)
        events.write_frame()
        meta = {**own_metadata(reader.info), **_our_header(reader.info), **extra}
        if mask:
            meta = orjson.loads(mask_text(orjson.dumps(meta).decode()))
        head = DumpWriter(target, level, fsync=False)
        for line in header_lines(meta):
            head.append(line)
        head.write_frame()
        with target.open("ab") as out:
            for chunk in file_chunks(scratch):
                out.write(chunk)  # zstd frames concatenate
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        scratch.unlink(missing_ok=True)
    return Encoded(meta, head.raw_bytes + events.raw_bytes)


# -- to fileFormat 3 ------------------------------------------------------------------------


def _same(a: object, b: object) -> bool:
    """Equal as JSON would tell: ``1``, ``1.0`` and ``True`` are not the same value."""
    return type(a) is type(b) and a == b


def _number(value: float) -> int | float:
    """Integral times are written as integers, as clients send them."""
    return int(value) if value.is_integer() else value


class StatsEncoder:
    """The rtcstats-js getStats compression for one peer connection, lossless.

    Short ids are numbered from ``start``: an encoder that follows one whose state was
    dropped (``to_rtcstats`` keeps them within a budget) numbers past every id the
    dropped one gave, so a reader's reports of that connection are never mixed up.
    """

    __slots__ = ("cells", "ids", "lossy", "next_id", "previous", "weight")

    def __init__(self, start: int = 0) -> None:
        #: Original stats id → the short id it is sent as.
        self.ids: dict[str, str] = {}
        self.next_id = start
        #: The last result, already in short ids (what the reader holds after decoding).
        self.previous: Reports = {}
        self.lossy = 0
        self.cells = 0
        self.weight = CONNECTION_BYTES

    def weigh(self) -> int:
        """Estimated bytes held (connections.py)."""
        reports = len(self.previous) + len(self.ids)
        self.weight = CONNECTION_BYTES + CELL_BYTES * self.cells + REPORT_BYTES * reports
        return self.weight

    def _short(self, stats_id: str) -> str:
        short = self.ids.get(stats_id)
        if short is None:
            short = self.ids[stats_id] = str(self.next_id)
            self.next_id += 1
        return short

    def _renamed(self, report: Report) -> Report:
        """The report with its references (``transportId``, ``codecId``...) in short ids:
        an ``…Id`` whose value names no report (``googTrackId``, a track's own id; a
        reference to a report never sent) is a value, and stays as it is."""
        ids = self.ids
        return {
            name: ids.get(value, value) if type(value) is str and name.endswith("Id") else value
            for name, value in report.items()
        }

    def encode(self, reports: Reports) -> dict[str, Any]:
        gone: list[str] = []
        if len(self.ids) > MAX_IDS:
            # Ids a client keeps renaming: start their numbering over, past the old one,
            # with everything held removed, so the map stays bounded.
            gone = list(self.previous)
            self.ids.clear()
            self.previous = {}
        shorts = [self._short(stats_id) for stats_id in reports]  # before any reference
        current: Reports = {
            short: self._renamed(report)
            for short, report in zip(shorts, reports.values(), strict=True)
        }
        self.cells = sum(len(report) for report in current.values())
        stamps = [
            r["timestamp"]
            for r in current.values()
            if isinstance(r.get("timestamp"), int | float) and not isinstance(r["timestamp"], bool)
        ]
        top = max(stamps) if stamps else None
        delta: dict[str, Any] = {}
        for short, report in current.items():
            base = self.previous.get(short)
            changed: Report = {}
            for name, value in report.items():
                if name == "timestamp":
                    continue
                old = base.get(name) if base is not None else None
                if base is None or name not in base:
                    changed[name] = value
                elif type(value) is dict and type(old) is dict:
                    inner = {k: v for k, v in value.items() if k not in old or not _same(old[k], v)}
                    if inner:
                        changed[name] = inner
                    if old.keys() - value.keys():
                        self.lossy += 1
                elif not _same(old, value):
                    changed[name] = value
            if base is not None and base.keys() - report.keys() - {"timestamp"}:
                self.lossy += 1
            stamp = report.get("timestamp")
            if stamp is not None and not _same(stamp, top):
                changed["timestamp"] = stamp
            if changed or base is None:
                delta[short] = self._coded(changed)
        # In the order they were held (a set's order changes with each process's hash seed).
        for short in [*gone, *(short for short in self.previous if short not in current)]:
            delta[short] = None
        if top is not None:
            delta[STAT_PROPERTY_CODES["timestamp"]] = top
        self.previous = current
        return delta

    @staticmethod
    def _coded(report: Report) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in report.items():
            if name == "type" and type(value) is str:
                value = STAT_TYPE_CODES.get(value, value)
            out[STAT_PROPERTY_CODES.get(name, name)] = value
        return out


@dataclass
class Conversion:
    """What a conversion did: counts, and the id maps a round-trip check needs."""

    events: int = 0
    stats_events: int = 0
    skipped: int = 0
    lossy_reports: int = 0
    #: Encoders dropped to keep within the reader's state budget.
    dropped_encoders: int = 0
    source_protocol: str | None = None
    #: Events written that the source has not: the page-level ``create`` (jsforms.py).
    added: int = 0
    #: The time of the first event (epoch ms), the ``startTime`` a header lacking one gets.
    first_ms: float | None = None
    id_maps: dict[str | None, dict[str, str]] = field(default_factory=dict)


def _coded_lines(reader: DumpReader, result: Conversion, id_maps: bool) -> Iterator[bytes]:
    # Encoders hold what the reader's decoders hold, within the same budget.
    encoders: LruStates[StatsEncoder] = LruStates(reader.limits.max_state_bytes)
    forms = JsForms()
    numbered = 0  # past every short id a dropped encoder gave
    last: float | None = None
    for event in reader:
        if event.method == ERROR_METHOD:
            result.skipped += 1  # damage markers: the damage itself is not copied
            continue
        if result.first_ms is None and event.timestamp >= PLAUSIBLE_MS:
            result.first_ms = event.timestamp
        if forms.needs_create(event.method, event.pc_id):
            when = event.timestamp if last is None else event.timestamp - last
            yield orjson.dumps([METHOD_CODES.get(CREATE, CREATE), None, {}, _number(when)])
            last = event.timestamp
            result.added += 1
        if event.is_stats:
            encoder = encoders.get(event.pc_id) or encoders.add(event.pc_id, StatsEncoder(numbered))
            value = encoder.encode(event.stats)
            for pc_id, dropped in encoders.settle(event.pc_id, encoder):
                numbered = max(numbered, dropped.next_id)
                result.dropped_encoders += 1
                _finished(pc_id, dropped, result, id_maps)
            result.stats_events += 1
            name = event.method
        else:
            name, value = forms.event(event.method, event.pc_id, event.value)
        when = event.timestamp if last is None else event.timestamp - last
        method = METHOD_CODES.get(name, name)
        yield orjson.dumps([method, event.pc_id, value, *event.extra, _number(when)])
        last = event.timestamp
        result.events += 1
    for pc_id, encoder in encoders.values():
        _finished(pc_id, encoder, result, id_maps)


def _finished(pc_id: str | None, encoder: StatsEncoder, result: Conversion, id_maps: bool) -> None:
    result.lossy_reports += encoder.lossy
    if id_maps:
        result.id_maps.setdefault(pc_id, {}).update(encoder.ids)


def to_rtcstats(reader: DumpReader, out: IO[bytes], *, id_maps: bool = False) -> Conversion:
    """Write the fileFormat 3 form of what ``reader`` reads to ``out``, uncompressed.
    ``id_maps``: keep every connection's original → short id map in the result (for
    checks; it grows with the dump)."""
    info = reader.info
    if info.scheme == "rtcstats-js":
        raise DumpFormatError("the dump is already in the rtcstats-js dialect: send it as is")
    result = Conversion()
    lines = _coded_lines(reader, result, id_maps)
    # Known once the first event is read: when the session started, and of envelopes,
    # whether a backend pusher sent them (its identity comes first).
    first = next(lines, None)
    result.source_protocol = info.client_protocol
    meta = {k: v for k, v in info.metadata.items() if k not in ("fileFormat", "clientProtocol")}
    meta["fileFormat"] = FILE_FORMAT
    # No clientProtocol: readers would pick the original dialect's scheme from it.
    meta["convertedFrom"] = info.client_protocol or info.layout
    if not isinstance(meta.get("startTime"), int | float) and result.first_ms is not None:
        meta["startTime"] = _number(result.first_ms)
    out.write(("\n".join(header_lines(meta)) + "\n").encode())
    if first is None:
        return result
    buffer: list[bytes] = [first]
    size = len(first) + 1
    for line in lines:
        buffer.append(line)
        size += len(line) + 1
        if size >= CHUNK:
            out.write(b"\n".join(buffer) + b"\n")
            buffer.clear()
            size = 0
    if buffer:
        out.write(b"\n".join(buffer) + b"\n")
    return result


def _decompressed_to(source: Path, out: IO[bytes]) -> None:
    compression, chunks = sniff(file_chunks(source))
    decompressor = Decompressor(compression)
    for chunk in chunks:
        for piece in decompressor.pieces(chunk):
            out.write(piece)


def decompress_file(source: Path, target: Path) -> None:
    """``source`` as it is, decompressed (any compression)."""
    with target.open("wb") as out:
        _decompressed_to(source, out)


def write_rtcstats(source: Path, out: IO[bytes], *, id_maps: bool = False) -> Conversion | None:
    """The dump at ``source`` (any layout, any compression) as fileFormat 3 on ``out``.

    An rtcstats dump of the rtcstats-js dialect that says ``fileFormat: 3`` is copied
    as it is (None); rtcstats-js lines under no header or another one (a raw client
    stream, an old header) get the header, then their lines byte for byte (None);
    anything else is converted (``to_rtcstats``, its ``Conversion``; ``id_maps`` as there).
    """
    reader = open_dump(source)
    try:
        info = reader.info
        if info.scheme != "rtcstats-js":
            return to_rtcstats(reader, out, id_maps=id_maps)
        if info.layout == "rtcstats-dump" and info.metadata.get("fileFormat") == FILE_FORMAT:
            reader.close()
            _decompressed_to(source, out)
            return None
        meta = {**info.metadata, "fileFormat": FILE_FORMAT}
        out.write(("\n".join(header_lines(meta)) + "\n").encode())
        for line in reader.lines():
            out.write(line + b"\n")
        return None
    finally:
        reader.close()


def rtcstats_file(source: Path, target: Path) -> None:
    """The dump at ``source`` as a fileFormat 3 file at ``target`` (``write_rtcstats``)."""
    with target.open("wb") as out:
        write_rtcstats(source, out)
