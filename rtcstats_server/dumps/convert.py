"""Rewrite any dump we read as ``fileFormat: 3``, the layout rtcstats.com parses.

The rtcstats.com reader only knows the rtcstats-js dialect: times relative to the
previous event, methods as codes (or names), getStats compressed against the
previous result of the same peer connection. Dumps of the 3.1 (jitsi) and 2.0
clients are re-encoded event by event from our reader's model, so whatever the
reader understands — both legacy delta schemes — comes out in one form.

The getStats encoder is lossless for what the rtcstats scheme can say: report ids
become "0", "1", ... (and every ``…Id`` reference with them, so nothing needs
reversing), property names and types become table codes, unchanged properties and
reports are left out, removed reports are ``null``, and a report whose timestamp is
not the newest keeps its own ``t``. Unlike rtcstats-js we keep certificate reports
and obsolete properties: the goal is the same reports, not a smaller file. What the
scheme cannot say — a property or a nested key that disappears from a live report —
is counted in ``lossy_reports``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from rtcstats_server.dumps.codes import METHOD_CODES, STAT_PROPERTY_CODES, STAT_TYPE_CODES
from rtcstats_server.dumps.getstats import Report, Reports
from rtcstats_server.dumps.layout import MAGIC, metadata_line
from rtcstats_server.dumps.reader import (
    BACKEND_STATS_METHOD,
    ERROR_METHOD,
    DumpReader,
    Event,
    open_dump,
)
from rtcstats_server.exceptions import DumpFormatError

FILE_FORMAT = 3


def _same(a: object, b: object) -> bool:
    """Equal as JSON would tell: ``1``, ``1.0`` and ``True`` are not the same value."""
    return type(a) is type(b) and a == b


def _number(value: float) -> int | float:
    """Integral times are written as integers, as clients send them."""
    return int(value) if value.is_integer() else value


class StatsEncoder:
    """The rtcstats-js getStats compression for one peer connection, lossless."""

    __slots__ = ("ids", "lossy", "previous")

    def __init__(self) -> None:
        #: Original stats id → the short id it is sent as.
        self.ids: dict[str, str] = {}
        #: The last result, already in short ids (what the reader holds after decoding).
        self.previous: Reports = {}
        self.lossy = 0

    def _short(self, stats_id: str) -> str:
        short = self.ids.get(stats_id)
        if short is None:
            short = self.ids[stats_id] = str(len(self.ids))
        return short

    def _renamed(self, report: Report) -> Report:
        return {
            name: self._short(value) if name.endswith("Id") and type(value) is str else value
            for name, value in report.items()
        }

    def encode(self, reports: Reports) -> dict[str, Any]:
        current: Reports = {self._short(sid): self._renamed(r) for sid, r in reports.items()}
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
        for short in self.previous.keys() - current.keys():
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
    source_protocol: str | None = None
    id_maps: dict[str | None, dict[str, str]] = field(default_factory=dict)


def _lines(reader: DumpReader, result: Conversion) -> Iterator[bytes]:
    encoders: dict[str | None, StatsEncoder] = {}
    last: float | None = None
    for event in reader:
        if event.method in (ERROR_METHOD, BACKEND_STATS_METHOD):
            result.skipped += 1  # damage markers and pusher objects have no fileFormat 3 form
            continue
        yield orjson.dumps(_entry(event, encoders, last, result))
        last = event.timestamp
        result.events += 1
    for pc_id, encoder in encoders.items():
        result.lossy_reports += encoder.lossy
        result.id_maps[pc_id] = encoder.ids


def _entry(
    event: Event, encoders: dict[str | None, StatsEncoder], last: float | None, result: Conversion
) -> list[Any]:
    value = event.value
    if event.is_stats:
        encoder = encoders.get(event.pc_id)
        if encoder is None:
            encoder = encoders[event.pc_id] = StatsEncoder()
        value = encoder.encode(event.stats)
        result.stats_events += 1
    when = event.timestamp if last is None else event.timestamp - last
    method = METHOD_CODES.get(event.method, event.method)
    return [method, event.pc_id, value, *event.extra, _number(when)]


def convert(reader: DumpReader, out: IO[bytes]) -> Conversion:
    """Write the fileFormat 3 form of what ``reader`` reads to ``out`` (blocking)."""
    info = reader.info
    if info.scheme == "rtcstats-js":
        raise DumpFormatError("the dump is already in the rtcstats-js dialect: send it as is")
    result = Conversion(source_protocol=info.client_protocol)
    meta = {k: v for k, v in info.metadata.items() if k not in ("fileFormat", "clientProtocol")}
    meta["fileFormat"] = FILE_FORMAT
    # No clientProtocol: readers would pick the original dialect's scheme from it.
    meta["convertedFrom"] = info.client_protocol or info.layout
    out.write(f"{MAGIC}\n{metadata_line(meta)}\n".encode())
    buffer: list[bytes] = []
    size = 0
    for line in _lines(reader, result):
        buffer.append(line)
        size += len(line) + 1
        if size >= 1 << 20:
            out.write(b"\n".join(buffer) + b"\n")
            buffer.clear()
            size = 0
    if buffer:
        out.write(b"\n".join(buffer) + b"\n")
    return result


def convert_file(source: Path, target: Path) -> Conversion:
    """Convert the dump at ``source`` (any layout the reader knows) into ``target``."""
    reader = open_dump(source)
    with target.open("wb") as out:
        return convert(reader, out)
