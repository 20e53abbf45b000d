"""A live dump left by a crash made whole: its torn tail cut, a close line appended.

A crash can stop the writer inside a frame. Everything before that frame decodes
(each flush is an independent frame, codecs.py), so the file is cut back to its last
whole frame and closed (with the code of a connection that ended without a close
frame) at the file's last write: then it reads like any finished dump.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from rtcstats_server.dumps.codecs import iter_frames
from rtcstats_server.dumps.layout import close_line, scheme_of
from rtcstats_server.dumps.writer import DumpWriter


def repair_live_dump(path: Path, level: int, code: int) -> tuple[int, int, float]:
    """Cut a torn last frame and append a close line with ``code``; return (lines, raw
    bytes, mtime).

    The close line's time follows the dump's own convention: absolute epoch ms, or for
    rtcstats-js dumps (relative times) the delta since the last event, which is found
    by summing the events' deltas. Blocking: call it from a worker thread.
    """
    last_write = path.stat().st_mtime
    data = path.read_bytes()
    good = 0
    lines = 0
    raw = 0
    relative = False
    clock: float | None = None
    for content, length in iter_frames([data]):
        good += length
        raw += len(content)
        for line in content.splitlines():
            lines += 1
            if lines == 2:
                relative = scheme_of(_protocol(line), "jitsi") == "rtcstats-js"
            elif lines > 2 and relative:
                clock = _advance(clock, line)
    with path.open("r+b") as handle:
        handle.truncate(good)
    writer = DumpWriter(path, level, fsync=True)
    writer.append(close_line(code, last_write * 1000, relative=relative, last_ms=clock))
    writer.write_frame()
    return lines + 1, raw + writer.raw_bytes, last_write


def _protocol(line: bytes) -> object:
    """The ``clientProtocol`` of a metadata line."""
    try:
        meta = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return meta.get("clientProtocol") if isinstance(meta, dict) else None


def _advance(clock: float | None, line: bytes) -> float | None:
    """The absolute time after an rtcstats-js event: its first one is absolute."""
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return clock
    stamp = entry[-1] if isinstance(entry, list) and entry else None
    if not isinstance(stamp, int | float) or isinstance(stamp, bool):
        return clock
    return float(stamp) if clock is None else clock + stamp
