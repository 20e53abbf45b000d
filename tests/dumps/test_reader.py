"""The event model reader over every real fixture, every layout and every kind of damage."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rtcstats_server.dumps.codecs import compress_frame
from rtcstats_server.dumps.getstats import LegacyStats, RtcstatsJsStats
from rtcstats_server.dumps.reader import ERROR_METHOD, DumpReader, Event, open_dump
from rtcstats_server.exceptions import DumpFormatError

REAL = [
    ("jitsi-chrome-standard-pc-failed.jsonl", "jitsi-disk"),
    ("jitsi-chrome-standard-pc-reconnect.jsonl", "jitsi-disk"),
    ("jitsi-firefox97-standard-stats-sfu.jsonl", "jitsi-disk"),
    ("jitsi-google-standard-stats-sfu.jsonl", "jitsi-disk"),
    ("jitsi-safari-standard-stats.jsonl", "jitsi-disk"),
    ("jitsi-undefined-ice-candidate.jsonl", "jitsi-disk"),
    ("jitsi-jvb-sample.jsonl", "jitsi-envelopes"),
    ("jitsi-clienttest.legacy-import.json", "legacy-import"),
    ("rtcstats-gumonly.rtcstatsdump.jsonl", "rtcstats-dump"),
    ("rtcstats-gumonly.webrtc-internals.json.gz", "webrtc-internals"),
]
CAPTURED = [
    ("jitsi-rtcstats-9.7.1-loopback-call.ws.jsonl", "jitsi-envelopes"),
    ("rtcstats-5.2.0-loopback-call.ws.jsonl", "client-stream"),
    ("rtcstats-js-2.4.0-loopback-call.ws.jsonl", "client-stream"),
]


def chunks_of(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def read_all(data: bytes, **kwargs: bool) -> tuple[DumpReader, list[Event]]:
    reader = DumpReader(chunks_of(data), **kwargs)
    return reader, list(reader)


def stored_dump(fixtures: Path, lines_per_frame: int = 10) -> tuple[bytes, list[str]]:
    """The rtcstats-js capture as our collector stores it: header, events, close, zstd
    frames of a few lines each (as periodic flushes make them)."""
    events = (fixtures / "captured/rtcstats-js-2.4.0-loopback-call.ws.jsonl").read_text()
    lines = [
        "RTCStatsDump",
        json.dumps({"fileFormat": 3, "clientProtocol": "rtcstats#5.0", "userAgent": "UA"}),
        *events.splitlines(),
        '["close",null,1000,15]',
    ]
    frames = [
        compress_frame("".join(line + "\n" for line in lines[i : i + lines_per_frame]).encode(), 3)
        for i in range(0, len(lines), lines_per_frame)
    ]
    return b"".join(frames), lines


@pytest.mark.parametrize(("name", "layout"), REAL)
def test_real_fixture_decodes(fixtures_dir: Path, name: str, layout: str) -> None:
    reader = open_dump(fixtures_dir / "real" / name, strict=True)
    events = list(reader)
    assert reader.info.layout == layout
    assert reader.errors == []
    assert events and all(isinstance(e.timestamp, float) for e in events)


@pytest.mark.parametrize(("name", "layout"), CAPTURED)
def test_captured_stream_decodes(fixtures_dir: Path, name: str, layout: str) -> None:
    reader = open_dump(fixtures_dir / "captured" / name, strict=True)
    events = list(reader)
    assert reader.info.layout == layout
    assert not any(e.method == ERROR_METHOD for e in events)
    assert {e.pc_id for e in events} >= {"PC_0", "PC_1"}


def test_rtcstats_js_codes_and_times(fixtures_dir: Path) -> None:
    events = list(open_dump(fixtures_dir / "captured/rtcstats-js-2.4.0-loopback-call.ws.jsonl"))
    # [39, null, {...}, 1795483241574] then [39, "PC_0", {...}, 25]: absolute, then a delta.
    assert (events[0].method, events[0].timestamp) == ("create", 1795483241574.0)
    assert (events[1].method, events[1].pc_id, events[1].timestamp) == (
        "create",
        "PC_0",
        1795483241574.0 + 25,
    )
    gum = events[3]
    assert gum.method == "navigator.mediaDevices.getUserMedia" and gum.extra == ("60-0",)
    failure = next(e for e in events if e.method.endswith("OnFailure"))
    assert failure.method == "setRemoteDescriptionOnFailure" and failure.extra == ("8-2",)
    states = [e.value for e in events if e.method == "onconnectionstatechange"]
    assert "connected" in states


def test_rtcstats_js_stats_fully_decompressed(fixtures_dir: Path) -> None:
    events = list(open_dump(fixtures_dir / "captured/rtcstats-js-2.4.0-loopback-call.ws.jsonl"))
    stats = [e for e in events if e.is_stats and e.pc_id == "PC_1"]
    first, last = stats[0].stats, stats[-1].stats
    inbound = [r for r in last.values() if r.get("type") == "inbound-rtp"]
    assert {r["kind"] for r in inbound} == {"audio", "video"}
    video = next(r for r in inbound if r["kind"] == "video")
    # ssrc, mid and the frame size came once, in the first delta of this report; the
    # last delta for it only carries counters.
    report_id = next(i for i, r in last.items() if r is video)
    assert video["ssrc"] == first.get(report_id, video)["ssrc"]
    assert isinstance(video["packetsReceived"], int) and video["packetsReceived"] > 500
    assert video["frameWidth"] == 640 and video["mid"] == "1"
    # The last raw delta of PC_1 ends with its own top-level t: every report without
    # an own timestamp carries it.
    raw = [
        json.loads(line)
        for line in (fixtures_dir / "captured/rtcstats-js-2.4.0-loopback-call.ws.jsonl")
        .read_text()
        .splitlines()
    ]
    last_raw = [m for m in raw if m[0] == "g" and m[1] == "PC_1"][-1][2]
    assert video["timestamp"] == last_raw.get(report_id, {}).get("t", last_raw["t"])
    transport = next(r for r in last.values() if r.get("type") == "transport")
    pair = last[transport["selectedCandidatePairId"]]
    assert pair["type"] == "candidate-pair" and pair["state"] == "succeeded"
    assert last[pair["localCandidateId"]]["type"] == "local-candidate"


def test_rtcstats_js_descriptions_expanded(fixtures_dir: Path) -> None:
    events = list(open_dump(fixtures_dir / "captured/rtcstats-js-2.4.0-loopback-call.ws.jsonl"))
    offer = next(e for e in events if e.method == "createOfferOnSuccess").value
    local = next(e for e in events if e.method == "setLocalDescription" and e.pc_id == "PC_0")
    assert local.value["sdp"].count("m=") == 2
    assert local.value["sdp"].strip() == offer["sdp"].strip()


def test_jitsi_stats_fully_decompressed(fixtures_dir: Path) -> None:
    path = fixtures_dir / "real/jitsi-google-standard-stats-sfu.jsonl"
    raw = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    raw_stats = [e for e in raw if e[0] == "getstats"]
    events = [e for e in open_dump(path) if e.is_stats]
    assert len(events) == len(raw_stats)
    report_id = "RTCAudioSource_1"
    assert raw_stats[0][2][report_id]["kind"] == "audio"
    assert "kind" not in raw_stats[-1][2][report_id]  # dropped as unchanged
    last = events[-1].stats[report_id]
    assert last["kind"] == "audio" and last["type"] == "media-source"
    assert raw_stats[-1][2][report_id]["timestamp"] == 0
    assert last["timestamp"] == raw_stats[-1][2]["timestamp"]
    assert all(r["timestamp"] > 0 for e in events for r in e.stats.values())
    assert "timestamp" not in events[-1].stats


def test_jitsi_absent_report_is_removed() -> None:
    decoder = LegacyStats()
    decoder.apply({"a": {"timestamp": 0, "x": 1}, "b": {"timestamp": 0, "y": 2}, "timestamp": 10})
    full = decoder.apply({"a": {"timestamp": 0}, "timestamp": 20})
    assert full == {"a": {"timestamp": 20, "x": 1}}
    own = decoder.apply({"a": {"timestamp": 15, "x": 3}, "timestamp": 20})
    assert own == {"a": {"timestamp": 15, "x": 3}}
    kept = decoder.apply({"a": {"x": 4}, "timestamp": 30})  # timestamp unchanged: dropped
    assert kept == {"a": {"timestamp": 15, "x": 4}}


def test_2015_absent_report_is_unchanged() -> None:
    decoder = LegacyStats(absent_removed=False)
    decoder.apply({"a": {"timestamp": 5, "x": 1}, "timestamp": "1970-01-01T00:00:00.010Z"})
    full = decoder.apply({"timestamp": "1970-01-01T00:00:00.020Z"})
    assert full == {"a": {"timestamp": 20.0, "x": 1}}


def test_rtcstats_js_null_removes_and_nested_merges() -> None:
    decoder = RtcstatsJsStats()
    decoder.apply({"0": {"type": 2, "96": {"none": 1.0, "cpu": 0.0}}, "1": {"type": 5}, "t": 1})
    full = decoder.apply({"0": {"96": {"none": 2.0}}, "1": None, "t": 2})
    assert full == {
        "0": {
            "type": "outbound-rtp",
            "qualityLimitationDurations": {"none": 2.0, "cpu": 0.0},
            "timestamp": 2,
        },
    }
    assert decoder.apply({"t": 3}) == {
        "0": {
            "type": "outbound-rtp",
            "qualityLimitationDurations": {"none": 2.0, "cpu": 0.0},
            "timestamp": 3,
        },
    }


def test_rtcstats_js_adds_changes_and_keeps_in_one_delta() -> None:
    """One delta with every case at once: held reports keep their order, new ones
    follow, a report's own time stays, returned reports are never changed later, and
    a bad report leaves the held state as it was."""
    decoder = RtcstatsJsStats()
    first = decoder.apply({"a": {"type": 5, "14": 1}, "b": {"type": 5}, "c": {"type": 5}, "t": 1})
    snapshot = {stats_id: dict(report) for stats_id, report in first.items()}
    full = decoder.apply(
        {"n": {"type": 2, "14": 7}, "b": {"14": 2, "t": 0.5}, "c": None, "x": None, "t": 2}
    )
    assert list(full) == ["a", "b", "n"]
    assert full["a"] == {"type": "transport", "packetsReceived": 1, "timestamp": 2}
    assert full["b"] == {"type": "transport", "packetsReceived": 2, "timestamp": 0.5}
    assert full["n"] == {"type": "outbound-rtp", "packetsReceived": 7, "timestamp": 2}
    assert first == snapshot
    assert decoder.cells == 9
    with pytest.raises(DumpFormatError):
        decoder.apply({"z": 3, "t": 3})
    with pytest.raises(DumpFormatError):
        decoder.apply({"a": [1], "t": 3})
    assert decoder.reports is full
    assert decoder.apply({"t": 4}) == {
        stats_id: {**report, "timestamp": 4} for stats_id, report in full.items()
    }


def test_our_zstd_dump_in_many_frames(fixtures_dir: Path) -> None:
    data, lines = stored_dump(fixtures_dir)
    reader, events = read_all(data, strict=True)
    assert reader.info.layout == "rtcstats-dump" and reader.info.compression == "zstd"
    assert reader.info.user_agent == "UA"
    _, plain_events = read_all("".join(line + "\n" for line in lines).encode())
    assert len(events) == len(lines) - 2 == len(plain_events)
    assert [(e.method, e.timestamp) for e in events] == [
        (e.method, e.timestamp) for e in plain_events
    ]
    assert events[-1].method == "close" and events[-1].value == 1000
    assert events[-1].timestamp == events[-2].timestamp + 15


def test_gzip_variant(fixtures_dir: Path) -> None:
    text = (fixtures_dir / "real/jitsi-chrome-standard-pc-failed.jsonl").read_bytes()
    reader, events = read_all(gzip.compress(text), strict=True)
    assert reader.info.compression == "gzip"
    assert len(events) == len([line for line in text.splitlines() if line.strip()]) - 1


def test_truncated_zstd_tail_gives_events_before_and_a_marker(fixtures_dir: Path) -> None:
    data, lines = stored_dump(fixtures_dir, lines_per_frame=20)
    cut = data[: len(data) - 50]  # inside the last frame
    reader, events = read_all(cut)
    assert events[-1].method == ERROR_METHOD
    assert "truncated" in (reader.error or "")
    good = [e for e in events if e.method != ERROR_METHOD]
    # the four whole frames held 80 lines: the two header lines and 78 events
    assert len(lines) == 100 and len(good) >= 78
    assert [e.line for e in good[:78]] == list(range(3, 81))
    with pytest.raises(DumpFormatError):
        list(DumpReader(chunks_of(cut), strict=True))


def test_bad_line_is_skipped_and_recorded(fixtures_dir: Path) -> None:
    text = (fixtures_dir / "real/jitsi-firefox97-standard-stats-sfu.jsonl").read_text()
    lines = text.splitlines()
    lines.insert(10, '["getstats", "PC_0", {"x": {"timestamp": 0}')
    _, events = read_all("\n".join(lines).encode())
    markers = [e for e in events if e.method == ERROR_METHOD]
    assert len(markers) == 1 and markers[0].line == 11
    assert len(events) == len([line for line in text.splitlines() if line.strip()])  # -1 +1


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world\n", b"\x28\xb5\x2f\xfd garbage garbage", b"RTCStatsDump\nnot json\n"],
)
def test_unknown_input_raises_dump_format_error(data: bytes) -> None:
    with pytest.raises(DumpFormatError):
        DumpReader(chunks_of(data))
