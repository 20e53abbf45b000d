"""The stats interpreter's rules, each on getStats results made for it, with every
expected value worked out by hand in the test."""

from __future__ import annotations

from typing import Any

import pytest

from rtcstats_server.analysis.interpreter import MAX_TRACKS, StatsInterpreter
from rtcstats_server.analysis.samples import StatsRead, TrackSample
from rtcstats_server.dumps.events import STATS_METHOD, Event

T0 = 1_700_000_000_000.0


def read(interpreter: StatsInterpreter, t: float, reports: dict[str, Any]) -> StatsRead:
    """One getStats result at ``t`` (ms); every report gets ``timestamp: t`` unless set."""
    full = {rid: {"timestamp": t, **r} if isinstance(r, dict) else r for rid, r in reports.items()}
    got = interpreter.read(Event(t, STATS_METHOD, "PC_0", full))
    assert got is not None
    return got


def track(result: StatsRead, stats_id: str) -> TrackSample:
    return next(s for s in result.tracks if s.track.stats_id == stats_id)


INBOUND = {"type": "inbound-rtp", "kind": "video", "ssrc": 1111}
OUTBOUND = {"type": "outbound-rtp", "kind": "audio", "ssrc": 2222}


def test_counters_deltas_restart_and_corrected_loss() -> None:
    """packetsReceived/packetsLost/bytesReceived at 0 s, 2 s, 4 s, 6 s:
    100/0/10 000, 300/10/60 000, 50/2/8 000 (re-created: went down), 150/1/20 000."""
    it = StatsInterpreter()
    first = track(
        read(it, T0, {"in": {**INBOUND, "packetsReceived": 100, "packetsLost": 0,
                             "bytesReceived": 10_000}}),
        "in",
    )  # fmt: skip
    # the first sample counts from the start of the stream, and has no rate
    assert (first.packets, first.packets_lost, first.bytes) == (100, 0, 10_000)
    assert first.interval_s is None and first.bitrate_kbps is None
    assert first.loss_pct == 0.0
    second = track(
        read(it, T0 + 2000, {"in": {**INBOUND, "packetsReceived": 300, "packetsLost": 10,
                                    "bytesReceived": 60_000}}),
        "in",
    )  # fmt: skip
    # 200 received + 10 lost in 2 s: 10 / 210 = 4.7619 %; 50 000 B * 8 / 2 s = 200 kbit/s
    assert (second.packets, second.packets_lost, second.interval_s) == (200, 10, 2.0)
    assert second.loss_pct == pytest.approx(100 * 10 / 210)
    assert second.bitrate_kbps == pytest.approx(200)
    third = track(
        read(it, T0 + 4000, {"in": {**INBOUND, "packetsReceived": 50, "packetsLost": 2,
                                    "bytesReceived": 8_000}}),
        "in",
    )  # fmt: skip
    # counters restarted: what they hold is what happened since, no rate over the gap
    assert third.reset and third.interval_s is None and third.bitrate_kbps is None
    assert (third.packets, third.packets_lost, third.bytes) == (50, 2, 8_000)
    fourth = track(
        read(it, T0 + 6000, {"in": {**INBOUND, "packetsReceived": 150, "packetsLost": 1,
                                    "bytesReceived": 20_000}}),
        "in",
    )  # fmt: skip
    # a late packet: lost goes 2 → 1 while received goes on; the sum stays exact
    assert (fourth.packets, fourth.packets_lost) == (100, -1)
    assert fourth.loss_pct == 0.0  # cut at 0 %
    assert fourth.bitrate_kbps == pytest.approx(12_000 * 8 / 1000 / 2)
    total_lost = sum(s.packets_lost or 0 for s in (first, second, third, fourth))
    assert total_lost == 10 + 1  # 10 before the restart, 1 after


def test_what_we_send_is_lost_as_the_far_end_reports_it() -> None:
    """remote-inbound ``localId`` names our outbound report; loss = its packetsLost over
    our packetsSent; RTT in ms once per measurement (roundTripTimeMeasurements)."""
    it = StatsInterpreter()
    remote = {"type": "remote-inbound-rtp", "kind": "audio", "ssrc": 2222, "localId": "out"}
    read(it, T0, {
        "out": {**OUTBOUND, "packetsSent": 1000, "bytesSent": 100_000},
        "ri": {**remote, "packetsLost": 5, "roundTripTime": 0.08,
               "roundTripTimeMeasurements": 3, "jitter": 0.002},
    })  # fmt: skip
    result = read(it, T0 + 1000, {
        "out": {**OUTBOUND, "packetsSent": 1050, "bytesSent": 105_000},
        "ri": {**remote, "packetsLost": 8, "roundTripTime": 0.08,
               "roundTripTimeMeasurements": 3, "jitter": 0.004},
    })  # fmt: skip
    sample = track(result, "out")
    assert sample.track.direction == "send" and sample.remote is not None
    # 3 of the 50 sent in this second: 6 %
    assert (sample.packets, sample.packets_lost) == (50, 3)
    assert sample.loss_pct == pytest.approx(6.0)
    assert sample.rtt_ms is None  # the same measurement (3) as before: not a new sample
    assert sample.jitter_ms == pytest.approx(4.0)  # jitter: every sample
    third = track(read(it, T0 + 2000, {
        "out": {**OUTBOUND, "packetsSent": 1100, "bytesSent": 110_000},
        "ri": {**remote, "packetsLost": 8, "roundTripTime": 0.1205,
               "roundTripTimeMeasurements": 4},
    }), "out")  # fmt: skip
    assert third.rtt_ms == pytest.approx(120.5)
    assert third.loss_pct == 0.0


def test_far_end_reports_without_local_id_go_by_ssrc() -> None:
    """Safari: ``kind: ""`` and no usable localId; the kind comes from our report."""
    it = StatsInterpreter()
    result = read(it, T0, {
        "out": {**OUTBOUND, "packetsSent": 10},
        "other": {"type": "outbound-rtp", "kind": "video", "ssrc": 3333, "packetsSent": 10},
        "ri": {"type": "remote-inbound-rtp", "kind": "", "ssrc": 3333, "roundTripTime": 0.05},
        "ro": {"type": "remote-outbound-rtp", "kind": "video", "ssrc": 1111,
               "localId": "in", "roundTripTime": 0.03},
        "in": {**INBOUND, "packetsReceived": 5},
    })  # fmt: skip
    assert track(result, "other").rtt_ms == pytest.approx(50)
    assert track(result, "out").rtt_ms is None
    assert track(result, "in").rtt_ms == pytest.approx(30)  # remote-outbound: what we receive


def test_only_fraction_lost_gives_an_estimated_count() -> None:
    """No packetsLost from the far end: its fractionLost is the interval's loss, and
    fractionLost * packets sent the estimated count (0.25 * 40 = 10)."""
    it = StatsInterpreter()
    remote = {"type": "remote-inbound-rtp", "kind": "audio", "localId": "out"}
    read(it, T0, {"out": {**OUTBOUND, "packetsSent": 60}, "ri": {**remote, "fractionLost": 0}})
    result = read(
        it,
        T0 + 1000,
        {"out": {**OUTBOUND, "packetsSent": 100}, "ri": {**remote, "fractionLost": 0.25}},
    )
    sample = track(result, "out")
    assert sample.loss_pct == pytest.approx(25)
    assert (sample.packets, sample.packets_lost) == (40, 10)


def test_selected_pair_switch() -> None:
    """The transport names the pair; a switch is counted, starts a new byte-rate base,
    and takes the new pair's candidates."""
    it = StatsInterpreter()
    candidates = {
        "l1": {"type": "local-candidate", "candidateType": "host", "protocol": "udp"},
        "l2": {"type": "local-candidate", "candidateType": "relay", "protocol": "udp",
               "relayProtocol": "tls", "networkType": "wifi"},
        "r1": {"type": "remote-candidate", "candidateType": "srflx"},
    }  # fmt: skip

    def result(t: float, selected: str, sent1: int, sent2: int, rtt2: float) -> StatsRead:
        return read(it, t, {
            **candidates,
            "t": {"type": "transport", "selectedCandidatePairId": selected, "dtlsState": "connected"},
            "p1": {"type": "candidate-pair", "localCandidateId": "l1", "remoteCandidateId": "r1",
                   "bytesSent": sent1, "currentRoundTripTime": 0.02, "totalRoundTripTime": t},
            "p2": {"type": "candidate-pair", "localCandidateId": "l2", "remoteCandidateId": "r1",
                   "bytesSent": sent2, "currentRoundTripTime": rtt2, "totalRoundTripTime": t},
        })  # fmt: skip

    first = result(T0, "p1", 0, 0, 0.3).transport
    assert first is not None and first.pair is not None
    assert first.new_pair and not first.switched and first.pair.local_type == "host"
    assert first.rtt_ms == pytest.approx(20) and first.dtls_state == "connected"
    second = result(T0 + 1000, "p1", 125_000, 0, 0.3).transport
    assert second is not None and not second.new_pair
    assert second.sent_kbps == pytest.approx(1000)  # 125 000 B * 8 / 1 s
    third = result(T0 + 2000, "p2", 250_000, 50_000, 0.3).transport
    assert third is not None and third.pair is not None and third.switched
    assert third.sent_kbps is None  # the other pair's bytes are not this one's
    assert third.rtt_ms == pytest.approx(300)
    pair = third.pair
    assert (pair.id, pair.local_type, pair.remote_type) == ("p2", "relay", "srflx")
    assert (pair.relay_protocol, pair.network_type) == ("tls", "wifi")
    fourth = result(T0 + 3000, "p2", 250_000, 100_000, 0.3).transport
    assert fourth is not None and fourth.sent_kbps == pytest.approx(400)


def test_firefox_selected_pair_and_old_candidate_names() -> None:
    """No transport report: the pair with ``selected: true`` (not a nominated one)."""
    it = StatsInterpreter()
    result = read(it, T0, {
        "a": {"type": "candidate-pair", "nominated": True, "state": "succeeded",
              "selected": False, "localCandidateId": "x"},
        "b": {"type": "candidate-pair", "nominated": True, "state": "succeeded",
              "selected": True, "localCandidateId": "y", "remoteCandidateId": "z"},
        "x": {"type": "local-candidate", "candidateType": "host"},
        "y": {"type": "localcandidate", "candidateType": "serverreflexive", "transport": "tcp"},
        "z": {"type": "remote-candidate", "candidateType": "relayed"},
    })  # fmt: skip
    assert result.transport is not None and result.transport.pair is not None
    pair = result.transport.pair
    assert (pair.id, pair.local_type, pair.remote_type, pair.protocol) == (
        "b",
        "srflx",
        "relay",
        "tcp",
    )


def test_legacy_goog_ssrc_reports() -> None:
    """Chrome's pre-standard stats: numbers as strings, RTT and jitter in ms, levels
    0..32767, loss of what we send in the send report (the far end's RTCP)."""
    it = StatsInterpreter()
    send = {"type": "ssrc", "mediaType": "audio", "ssrc": "42", "googCodecName": "opus"}
    recv = {"type": "ssrc", "mediaType": "video", "ssrc": "43"}
    read(it, T0, {
        "ssrc_42_send": {**send, "packetsSent": "1000", "bytesSent": "50000",
                         "packetsLost": "-1", "googRtt": "-1"},
        "ssrc_43_recv": {**recv, "packetsReceived": "900", "packetsLost": "100",
                         "bytesReceived": "1000000", "googFrameHeightReceived": "720"},
    })  # fmt: skip
    result = read(it, T0 + 2000, {
        "ssrc_42_send": {**send, "packetsSent": "1100", "bytesSent": "60000",
                         "packetsLost": "20", "googRtt": "250", "audioInputLevel": "16384",
                         "googJitterReceived": "12"},
        "ssrc_43_recv": {**recv, "packetsReceived": "1200", "packetsLost": "150",
                         "bytesReceived": "1500000", "googFrameRateReceived": "25"},
    })  # fmt: skip
    sent = track(result, "ssrc_42_send")
    assert sent.track.legacy and sent.track.direction == "send"
    assert sent.track.codec == "audio/opus" and sent.track.ssrc == "42"
    # lost -1 ("not measured") counted as 0, then 20 of 100 sent: 20 %
    assert (sent.packets, sent.packets_lost, sent.loss_pct) == (100, 20, 20.0)
    assert sent.rtt_ms == 250 and sent.jitter_ms == 12
    assert sent.audio_level == pytest.approx(16384 / 32767)
    assert sent.bitrate_kbps == pytest.approx(10_000 * 8 / 1000 / 2)
    received = track(result, "ssrc_43_recv")
    # 300 received + 50 lost: 50 / 350
    assert received.loss_pct == pytest.approx(100 * 50 / 350)
    assert received.fps == 25 and received.bitrate_kbps == pytest.approx(2000)


def test_a_shims_copies_are_not_read_beside_legacy_reports() -> None:
    """Chrome 48 with a shim: ``ssrc`` reports and hyphenless copies of the same
    streams (with ms where seconds belong): one track per stream, from ``ssrc``."""
    it = StatsInterpreter()
    result = read(it, T0, {
        "ssrc_7_send": {"type": "ssrc", "mediaType": "video", "ssrc": 7, "packetsSent": 10,
                        "googRtt": "2"},
        "rtpstream_ssrc_7_send": {"type": "outboundrtp", "mediaType": "video", "ssrc": 7,
                                  "isRemote": False, "packetsSent": 10, "roundTripTime": 2},
        "rtcpstream_ssrc_7_send": {"type": "inboundrtp", "ssrc": 7, "isRemote": True,
                                   "packetsLost": 0, "roundTripTime": 2},
    })  # fmt: skip
    assert [s.track.stats_id for s in result.tracks] == ["ssrc_7_send"]
    assert result.tracks[0].rtt_ms == 2  # ms, not 2 s


def test_pre_standard_firefox_remote_report() -> None:
    """Firefox before 57: ``inboundrtp`` with ``isRemote`` is the far end's report about
    what we send, linked by ``remoteId``; RTT as ``mozRtt`` in ms."""
    it = StatsInterpreter()
    result = read(it, T0, {
        "outbound_rtp_audio_0": {"type": "outboundrtp", "mediaType": "audio", "ssrc": "9",
                                 "isRemote": False, "packetsSent": 200,
                                 "remoteId": "outbound_rtcp_audio_0"},
        "outbound_rtcp_audio_0": {"type": "inboundrtp", "mediaType": "audio", "ssrc": "9",
                                  "isRemote": True, "packetsLost": 4, "mozRtt": 33,
                                  "remoteId": "outbound_rtp_audio_0"},
    })  # fmt: skip
    (sample,) = result.tracks
    assert sample.track.direction == "send"
    assert (sample.packets_lost, sample.rtt_ms, sample.loss_pct) == (4, 33, 2.0)


def test_identity_codec_and_deprecated_track_report() -> None:
    """Older Chrome/Safari keep frame sizes and freezes in the ``track`` report."""
    it = StatsInterpreter()
    result = read(it, T0, {
        "in": {**INBOUND, "codecId": "c1", "trackId": "tr", "mid": "1", "packetsReceived": 1},
        "c1": {"type": "codec", "mimeType": "video/VP8"},
        "tr": {"type": "track", "trackIdentifier": "abc", "frameHeight": 360,
               "freezeCount": 2, "totalFreezesDuration": 0.5},
    })  # fmt: skip
    sample = track(result, "in")
    identity = sample.track
    assert (identity.codec, identity.track_identifier, identity.mid) == ("video/VP8", "abc", "1")
    assert (identity.key, identity.label) == ("recv:video:in", "recv video 1111")
    assert (sample.frame_height, sample.freeze_count, sample.freeze_s) == (360, 2, 0.5)
    result = read(it, T0 + 1000, {
        "in": {**INBOUND, "codecId": "c2", "packetsReceived": 2},
        "c2": {"type": "codec", "mimeType": "video/H264"},
    })  # fmt: skip
    assert track(result, "in").track.codec == "video/H264"


def test_hostile_reports_do_not_break_the_pass() -> None:
    """Ids and types that are not strings, values that are not numbers, too many
    tracks: each is skipped, nothing raises, the track count stays bounded."""
    it = StatsInterpreter(max_connections=1)
    reports: dict[str, Any] = {
        "a": {"type": ["inbound-rtp"]},
        "b": {"type": "inbound-rtp", "kind": "video", "trackId": ["x"], "codecId": {"y": 1},
              "packetsReceived": "lots", "jitter": float("inf")},
        "c": {"type": "remote-inbound-rtp", "localId": {"z": 1}, "ssrc": [1]},
        "d": {"type": "transport", "selectedCandidatePairId": ["p"]},
        "e": "not a report",
        **{f"s{n}": {"type": "outbound-rtp", "kind": "audio", "ssrc": n}
           for n in range(MAX_TRACKS + 10)},
    }  # fmt: skip
    result = read(it, T0, reports)
    assert len(result.tracks) == MAX_TRACKS
    assert it.tracks_omitted == 11
    assert track(result, "b").jitter_ms is None and track(result, "b").packets is None
    # a second connection is past this interpreter's cap
    assert it.read(Event(T0, STATS_METHOD, "PC_1", reports)) is None
