"""An uploaded file, of any layout the dump reader knows, made into one of our dumps.

Stored dumps all have the layout ingest writes, so everything downstream (the quality
summary, the viewer, ``GET /v1/sessions/{id}/dump``, the forwarder's fileFormat 3
conversion) handles an uploaded session exactly like a streamed one: the rewriting
is ``dumps.encode.to_ours``. What is the upload's own: the metadata it adds (our
session id, where it came from), the refusals it answers (413 past a cap of the
``uploads.*`` limits, 415 for what is no dump), and the record's facts, read back
from what was written.

Every upload is read under the ``uploads.*`` caps (``ReadLimits``): a line, the bytes
it decompresses and expands to, its events; memory stays bounded by one line (or one
rebuilt result), the reader's per-connection state and a frame of output, whatever
the file holds.

Blocking (files, decompression, parsing): run it in a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtcstats_server.dialects.base import identity_fields
from rtcstats_server.dumps.encode import own_metadata, to_ours
from rtcstats_server.dumps.events import ReadLimits
from rtcstats_server.dumps.layout import CLOSE_METHOD
from rtcstats_server.dumps.reader import ERROR_METHOD, DumpReader, Span, epoch_ms, file_chunks
from rtcstats_server.exceptions import DumpFormatError, DumpTooLarge, UploadRefused


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


def _chunks(sources: Sequence[Path]) -> Iterator[bytes]:
    """The upload's bytes: one file (a raw body) or its chunks' files, in order."""
    for source in sources:
        yield from file_chunks(source)


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
        own = own_metadata(info)
        extra: dict[str, Any] = {}
        if own.get("sessionId") not in (None, session_id):
            extra["uploadedSessionId"] = own["sessionId"]
        extra.update({"sessionId": session_id, "source": "upload", "uploadLayout": info.layout})
        if file_name:
            extra["uploadFileName"] = file_name
        encoded = to_ours(reader, target, extra, level=level, mask=mask)
    finally:
        reader.close()
    result = _facts(target, info.layout, encoded.metadata, own, limits)
    result.raw_bytes = encoded.raw_bytes
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
    span = Span()
    for event in reader:
        if event.method == ERROR_METHOD:
            continue
        if event.method != CLOSE_METHOD:
            result.events += 1
        if event.method in ("identity", "connectionInfo"):
            result.fields.update(identity_fields(event.value))
        span.add(event)
    result.damage = reader.error
    start = epoch_ms(meta.get("startTime"))
    result.started_ms = span.first if span.first is not None else start
    result.ended_ms = span.last if span.last is not None else result.started_ms
    if result.events == 0:
        raise UploadRefused(415, "parsing_issue", "the file holds no events")
    return result
