"""The viewer's series and timeline, from hand-made events and from every real dump."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from rtcstats_server.analysis.viewmodel import (
    MAX_CONNECTIONS,
    MAX_TIMELINE,
    MAX_TIMELINE_ENTRIES,
    Buckets,
    ViewModelBuilder,
    build_view_model,
    event_kind,
    samples,
)
from rtcstats_server.dumps.reader import STATS_METHOD, Event, file_chunks

REAL = [
    "jitsi-chrome-standard-pc-failed.jsonl",
    "jitsi-chrome-standard-pc-reconnect.jsonl",
    "jitsi-clienttest.legacy-import.json",
    "jitsi-firefox97-standard-stats-sfu.jsonl",
    "jitsi-google-standard-stats-sfu.jsonl",
    "jitsi-jvb-sample.jsonl",
    "jitsi-safari-standard-stats.jsonl",
    "jitsi-undefined-ice-candidate.jsonl",
    "rtcstats-gumonly.rtcstatsdump.jsonl",
    "rtcstats-gumonly.webrtc-internals.json.gz",
]
#: Dumps without any getStats result: no chart to draw.
NO_STATS = {
    "jitsi-jvb-sample.jsonl",
    "rtcstats-gumonly.rtcstatsdump.jsonl",
    "rtcstats-gumonly.webrtc-internals.json.gz",
}


def stats(t: float, reports: dict[str, dict[str, Any]], pc: str = "PC_0") -> Event:
    return Event(t, "getStats", pc, {rid: {"timestamp": t, **r} for rid, r in reports.items()})


def series_of(model: dict[str, Any], pc: str | None, metric: str) -> dict[str, list[list[float]]]:
    group = next(g for g in model["groups"] if g["pc_id"] == pc)
    return {s["label"]: s["points"] for s in group["series"] if s["metric"] == metric}


def test_metrics_are_computed_from_counters_as_by_hand() -> None:
    """Two reports 2 s apart; every expected value is worked out from the deltas."""
    video_in = {"type": "inbound-rtp", "kind": "video", "ssrc": 11}
    audio_in = {"type": "inbound-rtp", "kind": "audio", "ssrc": 22}
    video_out = {"type": "outbound-rtp", "kind": "video", "ssrc": 33}
    remote = {"type": "remote-inbound-rtp", "kind": "video", "ssrc": 33}
    first = stats(
        10_000,
        {
            "v": {**video_in, "bytesReceived": 0, "packetsReceived": 100, "packetsLost": 0,
                  "framesDecoded": 0, "jitter": 0.010, "frameHeight": 360},
            "a": {**audio_in, "bytesReceived": 0, "totalSamplesReceived": 0,
                  "concealedSamples": 0, "audioLevel": 0.25},
            "o": {**video_out, "bytesSent": 1000, "framesPerSecond": 24},
        },
    )  # fmt: skip
    second = stats(
        12_000,
        {
            # 250 000 bytes in 2 s = 1000 kbit/s; 10 lost of 200 = 5 %; 60 frames / 2 s.
            "v": {**video_in, "bytesReceived": 250_000, "packetsReceived": 290,
                  "packetsLost": 10, "framesDecoded": 60, "jitter": 0.020, "frameHeight": 720},
            # 4 800 concealed of 96 000 samples = 5 %.
            "a": {**audio_in, "bytesReceived": 8_000, "totalSamplesReceived": 96_000,
                  "concealedSamples": 4_800, "audioLevel": 0.5},
            # (126 000 - 1 000) bytes * 8 / 2 s = 500 kbit/s.
            "o": {**video_out, "bytesSent": 126_000, "framesPerSecond": 30},
            "r": {**remote, "roundTripTime": 0.123, "jitter": 0.004, "fractionLost": 0.02},
        },
    )  # fmt: skip
    builder = ViewModelBuilder(buckets=100)
    builder.add(first)
    builder.add(second)
    model = builder.result()

    def last(metric: str, label: str) -> float:
        return series_of(model, "PC_0", metric)[label][-1][3]

    assert last("bitrate_kbps", "recv video 11") == pytest.approx(1000)
    assert last("loss_pct", "recv video 11") == pytest.approx(5)
    assert last("fps", "recv video 11") == pytest.approx(30)
    assert last("jitter_ms", "recv video 11") == pytest.approx(20)
    assert last("frame_height", "recv video 11") == 720
    assert last("bitrate_kbps", "recv audio 22") == pytest.approx(32)
    assert last("concealment_pct", "recv audio 22") == pytest.approx(5)
    assert last("audio_level", "recv audio 22") == 0.5
    assert last("bitrate_kbps", "send video 33") == pytest.approx(500)
    assert last("fps", "send video 33") == 30
    # what the far end reports about our stream lands on our sending stream
    assert last("rtt_ms", "send video 33") == pytest.approx(123)
    assert last("jitter_ms", "send video 33") == pytest.approx(4)
    assert last("loss_pct", "send video 33") == pytest.approx(2)
    # rates need two reports: the first report gives no bitrate point
    assert len(series_of(model, "PC_0", "bitrate_kbps")["recv video 11"]) == 1
    assert model["series_first"] == 10_000 and model["series_last"] == 12_000


def test_only_the_selected_candidate_pair_is_the_transport() -> None:
    pair = {"type": "candidate-pair", "bytesSent": 0, "bytesReceived": 0}
    reports = [
        {
            "t": {"type": "transport", "selectedCandidatePairId": "p1"},
            "p1": {**pair, "currentRoundTripTime": 0.05, "bytesSent": 0},
            "p2": {**pair, "currentRoundTripTime": 0.9},
        },
        {
            "t": {"type": "transport", "selectedCandidatePairId": "p1"},
            "p1": {**pair, "currentRoundTripTime": 0.07, "bytesSent": 25_000},
            "p2": {**pair, "currentRoundTripTime": 0.9},
        },
    ]
    got = [
        (sample.metric, label, sample.value)
        for sample, label in samples(stats(1000.0 * (i + 1), r) for i, r in enumerate(reports))
    ]
    assert ("rtt_ms", "transport (selected candidate pair)", pytest.approx(50)) in got
    assert ("rtt_ms", "transport (selected candidate pair)", pytest.approx(70)) in got
    assert ("bitrate_kbps", "transport sent", pytest.approx(200)) in got
    assert all(value != pytest.approx(900) for _, _, value in got)


def test_buckets_keep_every_sample_until_full_then_merge_within_bounds() -> None:
    few = Buckets(origin=0.0, width=100.0, cap=600)
    for i in range(500):
        few.add(i * 1000.0, float(i))
    assert len(few.points()) == 500  # each sample its own point: full resolution
    assert few.points()[7] == [7000.0, 7.0, 7.0, 7.0]

    rng = random.Random(7)
    values = [rng.uniform(0, 100) for _ in range(100_000)]
    values[54_321] = 1000.0  # one spike among 100k samples
    many = Buckets(origin=0.0, width=100.0, cap=600)
    for i, value in enumerate(values):
        many.add(i * 1000.0, value)
    points = many.points()
    assert len(points) <= 600
    assert many.samples == 100_000
    assert max(p[2] for p in points) == 1000.0  # the spike survives downsampling
    assert min(p[1] for p in points) == min(values)
    counts = [b[3] for b in many.buckets.values()]
    mean = sum(p[3] * c for p, c in zip(points, counts, strict=True)) / sum(counts)
    assert mean == pytest.approx(sum(values) / len(values))


@pytest.mark.parametrize(
    ("method", "value", "kind"),
    [
        ("setRemoteDescriptionOnFailure", "OperationError", "failure"),
        ("navigator.mediaDevices.getUserMediaOnFailure", "NotAllowedError", "failure"),
        ("onconnectionstatechange", "failed", "failure"),
        ("oniceconnectionstatechange", "checking", "state"),
        ("onicecandidate", {"candidate": "candidate:1 1 udp"}, "event"),
        ("createOffer", None, "api"),
        ("dumpError", "line 3 is not JSON", "failure"),
    ],
)
def test_timeline_kinds(method: str, value: Any, kind: str) -> None:
    assert event_kind(Event(1.0, method, "PC_0", value)) == kind


def test_a_long_timeline_keeps_failures_past_its_limit() -> None:
    builder = ViewModelBuilder(buckets=50)
    for i in range(MAX_TIMELINE + 100):
        builder.add(Event(float(i + 1), "addIceCandidate", "PC_0", {"candidate": f"c{i}"}))
    builder.add(Event(1e6, "setLocalDescriptionOnFailure", "PC_0", "InvalidStateError"))
    group = builder.result()["groups"][0]
    assert len(group["timeline"]) == MAX_TIMELINE + 1
    assert group["omitted"] == 100
    assert group["timeline"][-1][1] == "setLocalDescriptionOnFailure"


def test_a_flapping_state_is_capped_too() -> None:
    """Failures and state changes pass MAX_TIMELINE, but not MAX_TIMELINE_ENTRIES."""
    builder = ViewModelBuilder(buckets=50)
    for i in range(MAX_TIMELINE_ENTRIES + 500):
        state = "failed" if i % 2 else "connected"
        builder.add(Event(float(i + 1), "onconnectionstatechange", "PC_0", state))
    model = builder.result()
    (group,) = model["groups"]
    assert len(group["timeline"]) == MAX_TIMELINE_ENTRIES
    assert group["omitted"] == 500
    assert model["truncated"] is True


def test_connections_past_the_cap_are_counted_not_shown() -> None:
    builder = ViewModelBuilder(buckets=50)
    count = MAX_CONNECTIONS + 400
    for n in range(count):
        builder.add(Event(float(n + 1), "create", f"PC_{n}", {}))
        stats = {"in": {"type": "inbound-rtp", "kind": "audio", "jitter": 0.01}}
        builder.add(Event(float(n + 2), STATS_METHOD, f"PC_{n}", stats))
    model = builder.result()
    assert len(model["groups"]) == MAX_CONNECTIONS
    assert model["connection_events_omitted"] == 2 * 400
    assert model["stats_events"] == count  # still counted
    assert model["truncated"] is True
    small = ViewModelBuilder(buckets=50)
    small.add(Event(1.0, "create", "PC_0", {}))
    assert small.result()["truncated"] is False


@pytest.mark.parametrize("name", REAL)
def test_every_real_dump_gives_a_view(fixtures_dir: Path, name: str) -> None:
    model = build_view_model(file_chunks(fixtures_dir / "real" / name), buckets=300)
    assert model["error"] is None and model["errors"] == []
    assert any(group["timeline"] for group in model["groups"])
    charted = [s for group in model["groups"] for s in group["series"]]
    if name in NO_STATS:
        assert charted == []
    else:
        assert {s["metric"] for s in charted} >= {"bitrate_kbps", "jitter_ms"}
        assert all(len(s["points"]) <= 600 for s in charted)


def test_a_window_holds_only_what_happened_inside_it(fixtures_dir: Path) -> None:
    path = fixtures_dir / "real" / "jitsi-safari-standard-stats.jsonl"
    whole = build_view_model(file_chunks(path), buckets=300)
    start = whole["series_first"] + 60_000
    end = start + 30_000
    window = build_view_model(file_chunks(path), buckets=300, start=start, end=end)
    assert window["window"] == [start, end]
    points = [p for g in window["groups"] for s in g["series"] for p in s["points"]]
    times = [e[0] for g in window["groups"] for e in g["timeline"]]
    assert points and all(start <= p[0] <= end for p in points)
    assert all(start <= t <= end for t in times)
    # a window is full resolution: one point per getStats sample (this dump: every ~3 s)
    bitrate = next(
        s for g in window["groups"] for s in g["series"] if s["metric"] == "bitrate_kbps"
    )
    assert bitrate["samples"] == len(bitrate["points"]) >= 9
    # rates inside the window use the report just before it: no missing first point
    assert bitrate["points"][0][0] < start + 4_000
