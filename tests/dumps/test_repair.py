"""A live dump left by a crash: its torn tail cut, a close line in its own time convention."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rtcstats_server.dumps.codecs import compress_frame, iter_frames
from rtcstats_server.dumps.reader import open_dump
from rtcstats_server.dumps.repair import repair_live_dump

START = 1_795_483_241_574


def write_frames(path: Path, *frames: list[str]) -> None:
    path.write_bytes(b"".join(compress_frame(("\n".join(f) + "\n").encode(), 3) for f in frames))


def content(path: Path) -> list[str]:
    return b"".join(frame for frame, _ in iter_frames([path.read_bytes()])).decode().splitlines()


def test_recovered_rtcstats_dump_closes_with_a_delta(tmp_path: Path) -> None:
    """rtcstats-js dumps carry relative times: the recovery close line must too."""
    events = [
        "RTCStatsDump",
        json.dumps({"clientProtocol": "rtcstats#5.0", "fileFormat": 3}),
        json.dumps([39, None, {}, START]),
        json.dumps([39, "PC_0", {}, 25]),
        json.dumps([36, "PC_0", None, 1000]),
    ]
    path = tmp_path / "live.rtcstats.zst"
    write_frames(path, events)
    last_event = START + 25 + 1000
    os.utime(path, (0, (last_event + 4000) / 1000))
    lines, raw, _ = repair_live_dump(path, 3, 1006)
    close = json.loads(content(path)[-1])
    assert lines == 6 and close[:3] == ["close", None, 1006]
    assert 3990 <= close[3] <= 4010
    assert raw == len("\n".join(content(path)).encode()) + 1
    # Read through the one event model, the close lands at the file's last write.
    final = list(open_dump(path, strict=True))[-1]
    assert final.method == "close" and abs(final.timestamp - (last_event + 4000)) <= 10


def test_torn_tail_is_cut_and_an_absolute_close_appended(tmp_path: Path) -> None:
    header = ["RTCStatsDump", json.dumps({"clientProtocol": "3.1_STANDARD"})]
    first = [json.dumps(["getstats", "PC_0", {}, START + i, i]) for i in range(3)]
    second = [json.dumps(["getstats", "PC_0", {}, START + i, i]) for i in range(3, 6)]
    path = tmp_path / "live.rtcstats.zst"
    write_frames(path, header + first, second)
    whole = path.read_bytes()
    path.write_bytes(whole[:-7])  # a crash inside the second frame
    os.utime(path, (0, (START + 60_000) / 1000))
    lines, _, mtime = repair_live_dump(path, 3, 1006)
    text = content(path)
    assert text[:-1] == header + first  # the torn frame is gone, the good one whole
    assert json.loads(text[-1]) == ["close", None, 1006, START + 60_000]
    assert lines == len(text) and mtime == (START + 60_000) / 1000
    reader = open_dump(path, strict=True)
    assert [e.seq for e in reader if e.method == "getStats"] == [0, 1, 2]
