"""Merging a cluster session's segments into its one dump (sessions/segments.py)."""

from __future__ import annotations

import json
from pathlib import Path

from rtcstats_server.dumps.codecs import compress_frame, iter_frames
from rtcstats_server.dumps.layout import close_line
from rtcstats_server.sessions.segments import merge_segments


def segment(lines: list[str]) -> bytes:
    return compress_frame(("\n".join(lines) + "\n").encode(), 3)


def entry(seq: int) -> str:
    return json.dumps(["getstats", "PC_0", {"n": seq}, 1_700_000_000_000 + seq, seq])


def text_of(path: Path) -> list[str]:
    data = path.read_bytes()
    return [line.decode() for content, _ in iter_frames([data]) for line in content.splitlines()]


def test_a_merge_over_the_file_of_an_earlier_try_writes_the_dump_once(tmp_path: Path) -> None:
    first = segment(["RTCStatsDump", '{"fileFormat": 3}', *(entry(s) for s in range(1, 21))])
    second = segment([entry(s) for s in range(11, 41)])
    out = tmp_path / "session.rtcstats.zst"
    close = close_line(3001, 1_700_000_100_000, relative=False, last_ms=None)
    merge_segments([first, second], out, 3, close)
    merged = merge_segments([first, second], out, 3, close)  # a retry, same node and path
    lines = text_of(out)
    assert lines[:2] == ["RTCStatsDump", '{"fileFormat": 3}']
    assert [json.loads(line)[4] for line in lines[2:-1]] == list(range(1, 41))
    assert lines[-1] == close
    assert (merged.lines, merged.last_seq, merged.duplicates) == (43, 40, 10)
