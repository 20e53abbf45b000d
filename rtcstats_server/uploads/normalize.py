"""An uploaded file, of any layout the dump reader knows, rewritten as one of our dumps.

Stored dumps all have the layout ingest writes (``RTCStatsDump``, a metadata line,
the events, a close line, in zstd frames), so everything downstream — the quality
summary, the viewer, ``GET /v1/sessions/{id}/dump``, the forwarder's fileFormat 3
conversion — handles an uploaded session exactly like a streamed one.

Lines stay byte for byte wherever the upload has lines: rtcstats and our dumps keep
everything after their metadata line, jitsi on-disk dumps everything after their
``connectionInfo`` line, raw client streams every line, and 3.1 envelopes the JSON
string each ``stats-entry`` carries (what ingest stores for a live 3.1 client).
Whole-document exports (chrome://webrtc-internals, the 2016 importer JSON) have no
lines: their events are written from the reader's model in the 3.1 on-disk form
(absolute times, full method names, getStats as full reports, a report absent from
a result is gone). webrtc-internals keeps getStats as one time series per property;
those are put back together into one getStats result per sampling time.

Blocking (files, decompression, parsing): run it in a worker thread.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import orjson
import zstandard

from rtcstats_server.dialects.base import identity_fields
from rtcstats_server.dumps.frames import compress_frame
from rtcstats_server.dumps.layout import MAGIC, metadata_line
from rtcstats_server.dumps.privacy import mask_line, mask_text
from rtcstats_server.dumps.reader import (
    ERROR_METHOD,
    STATS_METHOD,
    DumpReader,
    Event,
    epoch_ms,
    file_chunks,
)
from rtcstats_server.exceptions import DumpFormatError, UploadRefused

#: Raw bytes per zstd frame written.
FRAME_BYTES: Final = 1 << 20
#: Dialect written in the metadata of dumps whose events we re-encode (see above).
EVENTS_PROTOCOL: Final = "3.1_STANDARD"
#: Close code of the line we add when an upload has none (a normal end).
CLOSE_CODE: Final = 1000
#: Times before this (1973) are not epoch milliseconds: some clients send 0 or deltas.
_PLAUSIBLE_MS: Final = 1e11
#: webrtc-internals samples of one report closer than this are one getStats result.
_SAMPLE_GRID_MS: Final = 50
_PUSHERS: Final = frozenset({"JVB", "JICOFO", "JIBRI", "JIGASI"})


@dataclass
class Normalized:
    """What the rewritten dump says about the session, for its record."""

    layout: str
    client_protocol: str | None
    metadata: dict[str, Any]
    fields: dict[str, str] = field(default_factory=dict)
    started_ms: float | None = None
    ended_ms: float | None = None
    events: int = 0
    raw_bytes: int = 0
    damage: str | None = None


class _FrameOut:
    """Lines into independent zstd frames, as the live dump writer makes them."""

    def __init__(self, handle: IO[bytes], level: int, mask: bool = False) -> None:
        self.handle = handle
        self.level = level
        self.mask = mask
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.raw_bytes = 0
        self.last = b""

    def line(self, data: bytes) -> None:
        if self.mask:
            masked = mask_line(data.decode("utf-8", "replace"))
            if masked is not None:
                data = masked.encode()
        self.buffer.append(data)
        self.buffer.append(b"\n")
        self.buffered += len(data) + 1
        if data.strip():
            self.last = data
        if self.buffered >= FRAME_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            data = b"".join(self.buffer)
            self.handle.write(compress_frame(data, self.level))
            self.raw_bytes += len(data)
            self.buffer.clear()
            self.buffered = 0


def _decompressed(handle: io.BufferedReader) -> IO[bytes]:
    head = handle.peek(4)[:4]
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        reader = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True)
        return io.BufferedReader(reader, 1 << 16)
    if head.startswith(b"\x1f\x8b"):
        return io.BufferedReader(gzip.GzipFile(fileobj=handle, mode="rb"), 1 << 16)
    return handle


def _lines(source: Path, limit: int) -> Iterator[bytes]:
    """Decompressed lines without their newline; more than ``limit`` bytes: 413."""
    total = 0
    with source.open("rb") as raw:
        stream = _decompressed(raw)
        try:
            for line in stream:
                total += len(line)
                if total > limit:
                    raise UploadRefused(
                        413, "too_large", f"the dump is larger than {limit} bytes decompressed"
                    )
                yield line.rstrip(b"\r\n")
        except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
            raise UploadRefused(415, "parsing_issue", f"the file is corrupt: {exc}") from None


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _time_value(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


# -- layouts with lines ------------------------------------------------------------------


def _copy_lines(lines: Iterator[bytes], layout: str, out: _FrameOut) -> dict[str, Any]:
    """Write the events of a layout that has lines; return the upload's own metadata."""
    meta: dict[str, Any] = {}
    if layout == "rtcstats-dump":
        for line in lines:
            if line.strip() == MAGIC.encode():
                break
        for line in lines:
            if line.strip():
                parsed = _loads(line)
                meta = parsed if isinstance(parsed, dict) else {}
                break
    elif layout == "jitsi-disk":
        for line in lines:
            if line.strip():
                first = _loads(line)
                if isinstance(first, list) and len(first) > 2 and isinstance(first[2], dict):
                    meta = first[2]
                break
    if layout == "jitsi-envelopes":
        for line in lines:
            entry = _unwrapped(line)
            if entry is not None:
                out.line(entry)
        return meta
    for line in lines:
        if line.strip():
            out.line(line)
    return meta


def _unwrapped(line: bytes) -> bytes | None:
    """The dump line a 3.1 envelope carries, as ingest stores it; None for control."""
    envelope = _loads(line)
    if not isinstance(envelope, dict):
        return line if line.strip() else None  # damage stays visible to the reader
    kind, data = envelope.get("type"), envelope.get("data")
    if kind == "stats-entry" and isinstance(data, str):
        return data.encode()
    if kind == "identity":
        if isinstance(data, list):
            return orjson.dumps(data)
        if isinstance(data, dict):
            return orjson.dumps(["identity", None, data, data.get("timestamp")])
    return None


def _envelope_protocol(source: Path, limit: int) -> str:
    """Pushers' envelopes say who they are in their identity's applicationName."""
    for line in _lines(source, limit):
        envelope = _loads(line)
        if isinstance(envelope, dict) and envelope.get("type") == "identity":
            data = envelope.get("data")
            app = data.get("applicationName") if isinstance(data, dict) else None
            if isinstance(app, str) and app.upper() in _PUSHERS:
                return f"3.1_{app.upper()}"
            break
    return "3.1_STANDARD"


def _close_line(last: bytes, relative: bool) -> bytes | None:
    """The close line to append when the dump has none."""
    entry = _loads(last) if last else None
    if isinstance(entry, list) and len(entry) > 1 and entry[0] == "close" and entry[1] is None:
        return None  # a peer connection's close names its pcId; the session's has none
    if relative:
        when: int | float = 0
    else:
        stamp = epoch_ms(entry[3]) if isinstance(entry, list) and len(entry) > 3 else None
        when = _time_value(stamp) if stamp is not None else 0
    return orjson.dumps(["close", None, CLOSE_CODE, when])


# -- whole-document exports ----------------------------------------------------------------


def _internals_stats(doc: dict[str, Any]) -> list[tuple[float, str, dict[str, Any]]]:
    """getStats results rebuilt from webrtc-internals' per-property series.

    A key is ``<report id>-<property>`` with ``values`` (a JSON array, often as a
    string) sampled evenly from ``startTime`` to ``endTime``. Names in brackets are
    rates the page derived itself, not stats: they are left out.
    """
    results: list[tuple[float, str, dict[str, Any]]] = []
    connections = doc.get("PeerConnections")
    for pc_id, connection in connections.items() if isinstance(connections, dict) else []:
        stats = connection.get("stats") if isinstance(connection, dict) else None
        if not isinstance(stats, dict):
            continue
        by_time: dict[int, dict[str, dict[str, Any]]] = {}
        for key, series in stats.items():
            report_id, dash, prop = str(key).rpartition("-")
            if not dash or not report_id or not prop or prop.startswith("["):
                continue
            if not isinstance(series, dict):
                continue
            values = series.get("values")
            if isinstance(values, str):
                values = _loads(values.encode())
            start, end = epoch_ms(series.get("startTime")), epoch_ms(series.get("endTime"))
            if not isinstance(values, list) or not values or start is None or end is None:
                continue
            step = (end - start) / (len(values) - 1) if len(values) > 1 else 0.0
            for index, value in enumerate(values):
                when = round((start + index * step) / _SAMPLE_GRID_MS) * _SAMPLE_GRID_MS
                reports = by_time.setdefault(when, {})
                report = reports.get(report_id)
                if report is None:
                    report = reports[report_id] = {"id": report_id, "timestamp": when}
                    if isinstance(series.get("statsType"), str):
                        report["type"] = series["statsType"]
                report[prop] = value
        for when in sorted(by_time):
            results.append((float(when), str(pc_id), by_time[when]))
    return results


def _document_events(
    reader: DumpReader, source: Path, limit: int
) -> tuple[list[Event], dict[str, Any]]:
    events = list(reader)
    meta: dict[str, Any] = {}
    agent = reader.info.user_agent
    if agent:
        meta["userAgent"] = agent
    if isinstance(reader.info.metadata.get("url"), str):
        meta["url"] = reader.info.metadata["url"]
    if reader.info.layout != "webrtc-internals":
        return events, meta
    doc = _loads(b"\n".join(_lines(source, limit)))
    if not isinstance(doc, dict):
        return events, meta
    for when, pc_id, reports in _internals_stats(doc):
        events.append(Event(when, STATS_METHOD, pc_id, {**reports, "timestamp": when}))
    connections = doc.get("PeerConnections")
    created = {e.pc_id for e in events if e.method == "create"}
    for pc_id, connection in connections.items() if isinstance(connections, dict) else []:
        if str(pc_id) in created or not isinstance(connection, dict):
            continue
        times = [e.timestamp for e in events if e.pc_id == str(pc_id) and e.timestamp > 0]
        config = {k: connection[k] for k in ("rtcConfiguration", "constraints") if k in connection}
        events.append(Event(min(times) if times else 0.0, "create", str(pc_id), config))
        if isinstance(connection.get("url"), str) and "url" not in meta:
            meta["url"] = connection["url"]
    events.sort(key=lambda event: event.timestamp)
    return events, meta


def _event_line(event: Event) -> bytes:
    method = "getstats" if event.method == STATS_METHOD else event.method
    return orjson.dumps([method, event.pc_id, event.value, _time_value(event.timestamp)])


# -- the whole job ---------------------------------------------------------------------------


def normalize(
    source: Path,
    target: Path,
    session_id: str,
    *,
    file_name: str | None,
    max_raw_bytes: int,
    level: int = 3,
    mask: bool = False,
) -> Normalized:
    """Write ``source`` (an upload) as our dump at ``target``; UploadRefused says why
    it cannot be. ``mask``: IP addresses are masked as ingest masks them."""
    try:
        reader = DumpReader(file_chunks(source))
    except DumpFormatError as exc:
        raise UploadRefused(415, "parsing_issue", str(exc)) from None
    info = reader.info
    relative = info.scheme == "rtcstats-js"
    with target.open("wb") as handle:
        out = _FrameOut(handle, level)
        out.line(MAGIC.encode())
        header: dict[str, Any]
        body: list[bytes] = []
        if info.layout in ("legacy-import", "webrtc-internals"):
            events, header = _document_events(reader, source, max_raw_bytes)
            header["clientProtocol"] = EVENTS_PROTOCOL
            header["convertedFrom"] = info.layout
            body = [_event_line(e) for e in events if e.method != ERROR_METHOD]
            relative = False
        else:
            header = {}
            if info.layout == "client-stream":
                header["clientProtocol"] = "rtcstats#5.0" if relative else "2.0"
                if relative:
                    header["fileFormat"] = 3
            elif info.layout == "jitsi-envelopes":
                header["clientProtocol"] = _envelope_protocol(source, max_raw_bytes)
        # The metadata line goes first, so events are staged in a scratch file (or,
        # for documents, already in memory) until the upload's own metadata is known.
        scratch = target.with_suffix(".events")
        try:
            with scratch.open("w+b") as staged:
                events_out = _FrameOut(staged, level, mask)
                if body:
                    for line in body:
                        events_out.line(line)
                    own: dict[str, Any] = {}
                else:
                    own = _copy_lines(_lines(source, max_raw_bytes), info.layout, events_out)
                close = _close_line(events_out.last, relative)
                if close is not None:
                    events_out.line(close)
                events_out.flush()
                meta = {**own, **header}
                if own.get("sessionId") not in (None, session_id):
                    meta["uploadedSessionId"] = own["sessionId"]
                meta.update(
                    {"sessionId": session_id, "source": "upload", "uploadLayout": info.layout}
                )
                if file_name:
                    meta["uploadFileName"] = file_name
                if mask:
                    meta = orjson.loads(mask_text(orjson.dumps(meta).decode()))
                out.line(metadata_line(meta).encode())
                out.flush()
                staged.seek(0)
                while chunk := staged.read(1 << 20):
                    handle.write(chunk)  # zstd frames concatenate
                raw_bytes = out.raw_bytes + events_out.raw_bytes
        finally:
            scratch.unlink(missing_ok=True)
    result = _facts(target, info.layout, meta, own)
    result.raw_bytes = raw_bytes
    return result


def _facts(target: Path, layout: str, meta: dict[str, Any], own: dict[str, Any]) -> Normalized:
    """Read back what was written: the check that it reads, and the record's facts."""
    reader = DumpReader(file_chunks(target))
    protocol = meta.get("clientProtocol")
    result = Normalized(layout, protocol if isinstance(protocol, str) else None, meta)
    # Not our metadata: its sessionId is now ours, not the client's meeting.
    result.fields.update(identity_fields({k: v for k, v in own.items() if k != "sessionId"}))
    first: float | None = None
    last: float | None = None
    for event in reader:
        if event.method == ERROR_METHOD:
            continue
        if event.method != "close":
            result.events += 1
        if event.method in ("identity", "connectionInfo"):
            result.fields.update(identity_fields(event.value))
        if event.timestamp >= _PLAUSIBLE_MS:
            first = event.timestamp if first is None else min(first, event.timestamp)
            last = event.timestamp if last is None else max(last, event.timestamp)
    result.damage = reader.error
    start = epoch_ms(meta.get("startTime"))
    result.started_ms = first if first is not None else start
    result.ended_ms = last if last is not None else result.started_ms
    if result.events == 0:
        raise UploadRefused(415, "parsing_issue", "the file holds no events")
    return result
