"""Encoding to fileFormat 3, checked as a round trip through our own reader."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from rtcstats_server.analysis.features.client import media_tracks, requested
from rtcstats_server.analysis.features.track import parse_track
from rtcstats_server.dumps.codes import METHOD_CODES, STAT_PROPERTY_CODES
from rtcstats_server.dumps.encode import Conversion, StatsEncoder, to_rtcstats, write_rtcstats
from rtcstats_server.dumps.events import BACKEND_STATS_METHOD, ERROR_METHOD
from rtcstats_server.dumps.jsforms import RENAMES
from rtcstats_server.dumps.reader import DumpReader, Event, open_dump
from rtcstats_server.exceptions import DumpFormatError
from tests.services.streams import JITSI_DUMPS
from tests.services.upstream import parse_issue

#: Every dialect we read, as the fixtures hold it: jitsi on-disk dumps (3.1_STANDARD),
#: a JVB pusher's envelopes, the 2016 import format, a webrtc-internals export, an
#: rtcstats dump, and the captured client streams (jitsi 3.1 envelopes, the 2015 client's
#: 2.0 stream, rtcstats-js's own).
SOURCES = [
    *(f"real/{name}" for name in JITSI_DUMPS),
    "real/jitsi-jvb-sample.jsonl",
    "real/jitsi-clienttest.legacy-import.json",
    "real/rtcstats-gumonly.webrtc-internals.json.gz",
    "real/rtcstats-gumonly.rtcstatsdump.jsonl",
    "captured/jitsi-rtcstats-9.7.1-loopback-call.ws.jsonl",
    "captured/rtcstats-5.2.0-loopback-call.ws.jsonl",
    "captured/rtcstats-js-2.4.0-loopback-call.ws.jsonl",
]


def exact(value: Any) -> bytes:
    """JSON with sorted keys: 1, 1.0 and true stay different, unlike Python's ==."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def back_to_original_ids(reports: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    original = {short: long for long, short in ids.items()}
    return {
        original[short]: {
            name: original.get(value, value)
            if name.endswith("Id") and isinstance(value, str)
            else value
            for name, value in report.items()
        }
        for short, report in reports.items()
    }


def same_meaning(method: str, old: Any, new: Any) -> bool:
    """A value reshaped into rtcstats-js's form (dumps/jsforms.py) says what the original
    said, as our analysis reads either shape: the same tracks, the same kinds asked for."""
    if method in ("addTrack", "ontrack"):
        return parse_track(new) == parse_track(old) and type(new) is list
    if method.endswith(("getUserMediaOnSuccess", "getDisplayMediaOnSuccess")):
        return list(media_tracks(new)) == list(media_tracks(old)) and type(new) is list
    if method.endswith(("getUserMedia", "getDisplayMedia")):
        return all(requested(new, kind) == requested(old, kind) for kind in ("audio", "video"))
    return False


def assert_no_less(restored: dict[str, Any], original: dict[str, Any], where: str) -> None:
    """What a lossy conversion (a property gone from a live report, which the rtcstats
    scheme cannot say) still guarantees: the same reports, every property of each with
    its value; a property the client stopped sending may linger."""
    assert restored.keys() == original.keys(), f"reports of {where}"
    for stats_id, report in original.items():
        kept = {name: restored[stats_id].get(name) for name in report}
        assert exact(kept) == exact(report), f"report {stats_id} of {where}"


def convert(source: Path) -> tuple[Conversion | None, bytes]:
    out = io.BytesIO()
    result = write_rtcstats(source, out, id_maps=True)
    return result, out.getvalue()


def assert_round_trip(source: Path) -> tuple[int, Conversion | None, bytes]:
    """Convert, read back with our reader: the same events (time, pc, extra, method
    under its rtcstats-js name, value: the same, or the same in rtcstats-js's shape;
    getStats: the same reports after delta expansion, in the original ids), plus the
    page-level ``create`` the conversion says it added. Returns the getStats count."""
    result, converted = convert(source)
    reader = DumpReader([converted], strict=True)
    assert converted.startswith(b"RTCStatsDump\n")
    assert reader.info.scheme == "rtcstats-js"
    assert reader.info.metadata["fileFormat"] == 3
    before = [e for e in open_dump(source, strict=True) if e.method != ERROR_METHOD]
    after: list[Event] = list(reader)
    added = [e for e in after if e.method == "create" and e.pc_id is None and e.value == {}]
    if result is not None:
        assert len(after) == len(before) + result.added == result.events + result.added
        assert len(added) == result.added
        after = [e for e in after if e not in added]
    assert len(after) == len(before)
    stats = 0
    for old, new in zip(before, after, strict=True):
        where = f"line {old.line}"
        assert (new.timestamp, new.pc_id, new.extra) == (old.timestamp, old.pc_id, old.extra), where
        assert new.method == old.method or new.method == RENAMES.get(old.method), where
        if old.is_stats:
            stats += 1
            ids = result.id_maps[old.pc_id] if result is not None else {}
            restored = back_to_original_ids(new.stats, ids) if ids else new.stats
            if result is not None and result.lossy_reports:
                assert_no_less(restored, old.stats, where)
            else:
                assert exact(restored) == exact(old.stats), f"getStats of {where}"
        elif exact(new.value) != exact(old.value):
            assert same_meaning(new.method, old.value, new.value), f"value of {where}"
    if result is not None:
        assert result.stats_events == stats
    assert parse_issue(converted) is None  # what the upstream stand-in (and rtcstats.com) need
    return stats, result, converted


@pytest.mark.parametrize("name", SOURCES)
def test_every_dialect_round_trips_through_file_format_3(fixtures_dir: Path, name: str) -> None:
    source = fixtures_dir / name
    stats, result, converted = assert_round_trip(source)
    if name.startswith("real/jitsi-") and "jvb" not in name and "legacy" not in name:
        assert stats > 0
        # The rtcstats scheme (codes, short ids, fewer repeated keys) is also smaller.
        assert len(converted) < source.stat().st_size
    if "rtcstats-js" in name or "rtcstatsdump" in name:
        assert result is None  # already rtcstats-js: its lines are sent as they are
    else:
        # Only the 2016 import format drops a property from a live report (one, once).
        assert result is not None and result.lossy_reports == (1 if "legacy" in name else 0)


def test_an_rtcstats_dump_is_copied_byte_for_byte(fixtures_dir: Path) -> None:
    source = fixtures_dir / "real" / "rtcstats-gumonly.rtcstatsdump.jsonl"
    assert convert(source)[1] == source.read_bytes()


def test_a_captured_rtcstats_js_stream_gets_the_header(fixtures_dir: Path) -> None:
    source = fixtures_dir / "captured" / "rtcstats-js-2.4.0-loopback-call.ws.jsonl"
    converted = convert(source)[1]
    magic, meta, rest = converted.split(b"\n", 2)
    assert magic == b"RTCStatsDump" and orjson.loads(meta) == {"fileFormat": 3}
    assert rest == source.read_bytes()


def test_jitsi_values_take_the_rtcstats_js_shapes(fixtures_dir: Path) -> None:
    """What made the rtcstats tools misread a converted jitsi dump: tracks as strings
    (kind ``a``, id ``u``), getUserMedia results as objects, no page-level create."""
    _, converted = convert(fixtures_dir / "real" / "jitsi-safari-standard-stats.jsonl")
    lines = [orjson.loads(line) for line in converted.splitlines()[2:]]
    meta = orjson.loads(converted.splitlines()[1])
    assert lines[0] == [39, None, {}, meta["startTime"]]  # create, at the first event
    assert meta["startTime"] == 1605199373960  # 2020-11-12, the first event's time
    gum = next(line for line in lines if line[0] == 61)  # getUserMediaOnSuccess
    assert gum[2][0] == [
        "audio",
        "d979e564-90cf-4af3-8e77-8b44d6328016",
        "Built-in Microphone",
        "d2e1fe28-e027-4332-8ce0-4e6cf9875ab1",
    ]
    ontrack = next(line for line in lines if line[0] == METHOD_CODES["ontrack"])
    assert ontrack[2] == ["audio", "64d052b1-4be4-48cd-afb0-dae9247c93ff", "", "mixedmslabel"]


def test_backend_pusher_statistics_are_kept_as_events(fixtures_dir: Path) -> None:
    source = fixtures_dir / "real" / "jitsi-jvb-sample.jsonl"
    result, converted = convert(source)
    assert result is not None and result.skipped == 0
    meta = orjson.loads(converted.splitlines()[1])
    assert meta["convertedFrom"] == "3.1_JVB"  # known from its identity, read first
    pushed = [e for e in DumpReader([converted]) if e.method == BACKEND_STATS_METHOD]
    original = [e for e in open_dump(source) if e.method == BACKEND_STATS_METHOD]
    assert len(pushed) == len(original) > 0
    assert [(e.timestamp, e.value) for e in pushed] == [(e.timestamp, e.value) for e in original]


def test_a_report_id_field_that_names_no_report_stays_as_it_is() -> None:
    """``googTrackId`` is a track's id, not a reference: renaming it would change the
    track identifier readers find (the 2016 import format's legacy stats)."""
    encoder = StatsEncoder()
    encoded = encoder.encode(
        {
            "ssrc_1_send": {
                "type": "ssrc",
                "timestamp": 5,
                "googTrackId": "t-1",
                "transportId": "C",
            },
            "C": {"type": "googComponent", "timestamp": 5},
        }
    )
    assert encoded["0"]["googTrackId"] == "t-1"
    transport = STAT_PROPERTY_CODES["transportId"]
    assert encoded["0"][transport] == "1"  # a reference: renamed with its report


def test_relative_times_and_codes(fixtures_dir: Path) -> None:
    out = io.BytesIO()
    to_rtcstats(open_dump(fixtures_dir / "real" / "jitsi-chrome-standard-pc-failed.jsonl"), out)
    lines = out.getvalue().splitlines()
    create, first, second = (orjson.loads(line) for line in lines[2:5])
    original = [
        orjson.loads(x)
        for x in (fixtures_dir / "real" / JITSI_DUMPS[0]).read_bytes().split(b"\n")[1:3]
    ]
    assert create == [39, None, {}, original[0][3]]  # added (jsforms.py): epoch ms
    assert first == [60, None, original[0][2], 0]  # getUserMedia: code 60, then deltas
    assert second[0] == 35  # createDataChannel
    assert second[-1] == original[1][3] - original[0][3]
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
        "1": {"type": 5, "t": 8, "125": "P"},  # names no report: a value, kept
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
    _, result, _ = assert_round_trip(dump)
    assert result is not None and result.source_protocol == "2.0"
