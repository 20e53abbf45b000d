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
a result is gone); webrtc-internals' per-property series are put back together into
getStats results by the reader (dumps/documents.py).

Every upload is read under the ``uploads.*`` caps (``ReadLimits``): a line, the bytes
it decompresses and expands to, its events. Past one, ``UploadRefused`` 413 with the
cap as its error code; memory stays bounded by one line (or one rebuilt result) and
a frame of output, whatever the file holds.

Blocking (files, decompression, parsing): run it in a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import orjson

from rtcstats_server.dialects.base import identity_fields
from rtcstats_server.dumps.events import EXPANDED_TOO_LARGE, TOO_MANY_EVENTS, ReadLimits
from rtcstats_server.dumps.frames import compress_frame
from rtcstats_server.dumps.layout import MAGIC, metadata_line
from rtcstats_server.dumps.privacy import mask_line, mask_text
from rtcstats_server.dumps.reader import (
    ERROR_METHOD,
    STATS_METHOD,
    DumpReader,
    Event,
    dump_lines,
    epoch_ms,
    file_chunks,
)
from rtcstats_server.exceptions import DumpFormatError, DumpTooLarge, UploadRefused

#: Raw bytes per zstd frame written.
FRAME_BYTES: Final = 1 << 20
#: Dialect written in the metadata of dumps whose events we re-encode (see above).
EVENTS_PROTOCOL: Final = "3.1_STANDARD"
#: Close code of the line we add when an upload has none (a normal end).
CLOSE_CODE: Final = 1000
#: Times before this (1973) are not epoch milliseconds: some clients send 0 or deltas.
_PLAUSIBLE_MS: Final = 1e11
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
    """Lines into independent zstd frames, as the live dump writer makes them, counted
    against the caps of ``limits`` (lines are events; bytes are what the upload
    expanded to)."""

    def __init__(
        self, handle: IO[bytes], level: int, limits: ReadLimits, mask: bool = False
    ) -> None:
        self.handle = handle
        self.level = level
        self.limits = limits
        self.mask = mask
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.raw_bytes = 0
        self.lines = 0
        self.last = b""

    def line(self, data: bytes) -> None:
        self.lines += 1
        events, expanded = self.limits.max_events, self.limits.max_expanded_bytes
        if events is not None and self.lines > events:
            raise DumpTooLarge(TOO_MANY_EVENTS, f"the dump holds more than {events} events")
        if expanded is not None and self.raw_bytes + self.buffered + len(data) > expanded:
            raise DumpTooLarge(
                EXPANDED_TOO_LARGE, f"the dump expands to more than {expanded} bytes"
            )
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


def _chunks(sources: Sequence[Path]) -> Iterator[bytes]:
    """The upload's bytes: one file (a raw body) or its chunks' files, in order."""
    for source in sources:
        yield from file_chunks(source)


def _envelope_protocol(sources: Sequence[Path], limits: ReadLimits) -> str:
    """Pushers' envelopes say who they are in their identity's applicationName."""
    for line in dump_lines(_chunks(sources), limits):
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


def _event_line(event: Event) -> bytes:
    method = "getstats" if event.method == STATS_METHOD else event.method
    return orjson.dumps([method, event.pc_id, event.value, _time_value(event.timestamp)])


# -- the whole job ---------------------------------------------------------------------------


def normalize(
    sources: Sequence[Path],
    target: Path,
    session_id: str,
    *,
    file_name: str | None,
    limits: ReadLimits,
    level: int = 3,
    mask: bool = False,
) -> Normalized:
    """Write the upload whose bytes are the files ``sources`` (in order) as our dump at
    ``target``; UploadRefused says why it cannot be: 413 past a cap of ``limits``, 415
    when it is no dump we read. ``mask``: IP addresses are masked as ingest masks them."""
    try:
        return _normalize(sources, target, session_id, file_name, limits, level, mask)
    except DumpTooLarge as exc:
        raise UploadRefused(413, exc.cap, exc.message) from None
    except DumpFormatError as exc:
        raise UploadRefused(415, "parsing_issue", str(exc)) from None


def _normalize(
    sources: Sequence[Path],
    target: Path,
    session_id: str,
    file_name: str | None,
    limits: ReadLimits,
    level: int,
    mask: bool,
) -> Normalized:
    reader = DumpReader(_chunks(sources), limits=limits)
    try:
        info = reader.info
        relative = info.scheme == "rtcstats-js"
        documents = info.layout in ("legacy-import", "webrtc-internals")
        header: dict[str, Any] = {}
        if documents:
            if info.user_agent:
                header["userAgent"] = info.user_agent
            if isinstance(info.metadata.get("url"), str):
                header["url"] = info.metadata["url"]
            header["clientProtocol"] = EVENTS_PROTOCOL
            header["convertedFrom"] = info.layout
            relative = False
        elif info.layout == "client-stream":
            header["clientProtocol"] = "rtcstats#5.0" if relative else "2.0"
            if relative:
                header["fileFormat"] = 3
        elif info.layout == "jitsi-envelopes":
            header["clientProtocol"] = _envelope_protocol(sources, limits)
        with target.open("wb") as handle:
            out = _FrameOut(handle, level, limits)
            out.line(MAGIC.encode())
            # The metadata line goes first, so events are staged in a scratch file
            # until the upload's own metadata is known.
            scratch = target.with_suffix(".events")
            try:
                with scratch.open("w+b") as staged:
                    events_out = _FrameOut(staged, level, limits, mask)
                    own: dict[str, Any] = {}
                    if documents:
                        for event in reader:
                            if event.method != ERROR_METHOD:
                                events_out.line(_event_line(event))
                    else:
                        reader.close()
                        lines = dump_lines(_chunks(sources), limits)
                        own = _copy_lines(
                            (ln.rstrip(b"\r") for ln in lines), info.layout, events_out
                        )
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
    finally:
        reader.close()
    result = _facts(target, info.layout, meta, own, limits)
    result.raw_bytes = raw_bytes
    return result


def _facts(
    target: Path, layout: str, meta: dict[str, Any], own: dict[str, Any], limits: ReadLimits
) -> Normalized:
    """Read back what was written: the check that it reads, and the record's facts
    (counts, times, identity: no getStats state is needed, and none is kept)."""
    reader = DumpReader(file_chunks(target), limits=limits, decode=False)
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
