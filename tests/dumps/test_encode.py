"""Encoding to fileFormat 3, checked as a round trip through our own reader."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from rtcstats_server.dumps.encode import StatsEncoder, to_rtcstats
from rtcstats_server.dumps.reader import DumpReader, Event, open_dump
from rtcstats_server.exceptions import DumpFormatError
from tests.services.streams import JITSI_DUMPS
from tests.services.upstream import parse_issue


def exact(value: Any) -> bytes:
    """JSON with sorted keys: 1, 1.0 and true stay different, unlike Python's ==."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def back_to_original_ids(reports: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    original = {short: long for long, short in ids.items()}
    return {
        original[short]: {
            name: original[value] if name.endswith("Id") and isinstance(value, str) else value
            for name, value in report.items()
        }
        for short, report in reports.items()
    }


def assert_round_trip(source: Path) -> tuple[int, int, bytes]:
    out = io.BytesIO()
    result = to_rtcstats(open_dump(source), out, id_maps=True)
    converted = out.getvalue()
    reader = DumpReader([converted], strict=True)
    assert reader.info.scheme == "rtcstats-js"
    assert reader.info.metadata["fileFormat"] == 3
    before: list[Event] = list(open_dump(source, strict=True))
    after: list[Event] = list(reader)
    assert len(after) == len(before) == result.events
    stats = 0
    for old, new in zip(before, after, strict=True):
        assert (new.timestamp, new.method, new.pc_id, new.extra) == (
            old.timestamp,
            old.method,
            old.pc_id,
            old.extra,
        ), f"line {old.line}"
        if old.is_stats:
            stats += 1
            restored = back_to_original_ids(new.stats, result.id_maps[old.pc_id])
            assert exact(restored) == exact(old.stats), f"getStats of line {old.line}"
        else:
            assert exact(new.value) == exact(old.value), f"value of line {old.line}"
    assert result.lossy_reports == 0
    assert parse_issue(converted) is None  # what the upstream stand-in (and rtcstats.com) need
    return stats, result.stats_events, converted


@pytest.mark.parametrize("name", JITSI_DUMPS)
def test_jitsi_dump_round_trips_through_file_format_3(fixtures_dir: Path, name: str) -> None:
    source = fixtures_dir / "real" / name
    stats, encoded, converted = assert_round_trip(source)
    assert stats == encoded > 0
    # The rtcstats scheme (codes, short ids, fewer repeated keys) is also smaller.
    assert len(converted) < source.stat().st_size


def test_relative_times_and_codes(fixtures_dir: Path) -> None:
    out = io.BytesIO()
    to_rtcstats(open_dump(fixtures_dir / "real" / "jitsi-chrome-standard-pc-failed.jsonl"), out)
    lines = out.getvalue().splitlines()
    first, second = orjson.loads(lines[2]), orjson.loads(lines[3])
    original = [
        orjson.loads(x)
        for x in (fixtures_dir / "real" / JITSI_DUMPS[0]).read_bytes().split(b"\n")[1:3]
    ]
    assert first == [60, None, original[0][2], original[0][3]]  # getUserMedia: code 60, epoch ms
    assert second[0] == 35  # createDataChannel
    assert second[-1] == original[1][3] - original[0][3]  # then deltas
    stats = [orjson.loads(x) for x in lines[2:] if x.startswith(b'["g"')]
    assert stats and all("t" in s[2] for s in stats)


def test_encoder_marks_removed_reports_and_own_timestamps() -> None:
    encoder = StatsEncoder()
    first = encoder.encode(
        {
            "RTCCodec_1": {"type": "codec", "timestamp": 10, "mimeType": "audio/opus"},
            "RTCTransport_0": {"type": "transport", "timestamp": 8, "selectedCandidatePairId": "P"},
        }
    )
    assert first == {
        "0": {"type": 14, "6": "audio/opus"},
        "1": {"type": 5, "t": 8, "125": "2"},
        "t": 10,
    }
    second = encoder.encode(
        {"RTCCodec_1": {"type": "codec", "timestamp": 20, "mimeType": "audio/opus"}}
    )
    assert second == {"1": None, "t": 20}  # unchanged codec left out, transport removed


def test_a_dump_already_in_file_format_3_is_not_converted(fixtures_dir: Path) -> None:
    with pytest.raises(DumpFormatError):
        to_rtcstats(
            open_dump(fixtures_dir / "real" / "rtcstats-gumonly.rtcstatsdump.jsonl"), io.BytesIO()
        )


def test_2015_client_stream_round_trips(fixtures_dir: Path, tmp_path: Path) -> None:
    # The 2.0 client's messages as our collector stores them.
    messages = (fixtures_dir / "captured" / "rtcstats-5.2.0-loopback-call.ws.jsonl").read_bytes()
    meta = orjson.dumps({"clientProtocol": "2.0", "url": "/devroom2/page.html"})
    dump = tmp_path / "legacy.jsonl"
    dump.write_bytes(b"RTCStatsDump\n" + meta + b"\n" + messages)
    assert_round_trip(dump)
