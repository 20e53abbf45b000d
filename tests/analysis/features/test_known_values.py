"""Features with values worked out by hand, on crafted dumps.

Each case is a small dump written event by event (crafted.py) and the values its
features must have, with the reasoning beside them. Together with the peer's recorded
values (test_parity.py) they give every documented feature a known value
(test_feature_coverage.py checks that none is left without).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import pytest

from rtcstats_server.analysis.feature_list import Level
from rtcstats_server.analysis.geo import GeoLocator
from tests.analysis.features.crafted import (
    T0,
    candidate,
    connection,
    event,
    features_of,
    stats,
    track,
)
from tests.services.maxmind import opened_locator

#: Expected to be absent (unknown, or not applying).
ABSENT: Final = object()

Pick = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Known:
    """A crafted dump, the entity to look at, and its features' hand-worked values."""

    name: str
    level: Level
    events: list[list[Any]]
    expected: dict[str, Any]
    pick: Pick
    meta: dict[str, Any] = field(default_factory=dict)
    geo: bool = False


def client(features: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = features["client"]
    return found


# -- client ---------------------------------------------------------------------------

GUM_TRACKS = [
    ["audio", "mic-1", "USB Mic (046d:0a44)", "stream-1"],
    ["video", "cam-1", "Logitech BRIO (046d:085e)", "stream-1"],
]
CAPTURE: Final = Known(
    "getUserMedia tracks, devices, failure and ended tracks",
    "client",
    [
        event("create", None, {"reloadCount": 2, "hardwareConcurrency": 8}, 0),
        event("navigator.mediaDevices.getUserMedia", None, {"audio": True, "video": True}, 10),
        event("navigator.mediaDevices.getUserMediaOnSuccess", None, GUM_TRACKS, 20),
        event("navigator.mediaDevices.getUserMedia", None, {"video": {"width": 1280}}, 30),
        event(
            "navigator.mediaDevices.getUserMediaOnFailure",
            None,
            "NotReadableError: Could not start video source",
            40,
        ),
        # obtained at +20: 500 ms and 900 ms later, both under a second
        event("MediaStreamTrack.onended", None, "mic-1", 520),
        event("MediaStreamTrack.onended", None, "cam-1", 920),
        event("navigator.mediaDevices.enumerateDevices", None, None, 1000),
        event("close", None, 1000, 2000),
    ],
    {
        "reload_count": 2,
        "hardware_concurrency": 8,
        "start_time": T0,
        "duration": 2000,
        "called_get_user_media_combined": True,
        "get_user_media_success_count": 1,
        "get_user_media_error_count": 1,
        "get_user_media_error": "NotReadableError: Could not start video source",
        "audio_device_usb_id": "046d:0a44",
        "video_device_usb_id": "046d:085e",
        "audio_ended": True,
        "video_ended": True,
        "audio_short_duration": True,
        "video_short_duration": True,
        "enumerate_devices_count": 1,
    },
    client,
)
LONG_TRACKS: Final = Known(
    "a track ending after a second is not short; a label without a USB id has none",
    "client",
    [
        event("navigator.mediaDevices.getUserMediaOnSuccess", None, [["audio", "m", "Mic"]], 0),
        event("MediaStreamTrack.onended", None, "m", 1000),
        event("MediaStreamTrack.onended", None, "someone-else", 1001),
    ],
    {
        "audio_ended": True,
        "audio_short_duration": ABSENT,
        "video_ended": ABSENT,
        "audio_device_usb_id": ABSENT,
    },
    client,
)
JITSI_CAPTURE: Final = Known(
    "the jitsi client's capture values ({id, tracks} objects, error objects)",
    "client",
    [
        event("navigator.mediaDevices.getUserMedia", None, {"audio": True}, 0),
        event(
            "navigator.mediaDevices.getUserMediaOnSuccess",
            None,
            {"id": "s", "tracks": [{"id": "a", "kind": "audio", "label": "Jabra (0b0e:2481)"}]},
            5,
        ),
        event(
            "navigator.mediaDevices.getUserMediaOnFailure",
            None,
            {"name": "NotAllowedError", "message": "Permission denied"},
            9,
        ),
    ],
    {
        "called_get_user_media_audio": True,
        "called_get_user_media_video": False,
        "audio_device_usb_id": "0b0e:2481",
        "get_user_media_error": "NotAllowedError: Permission denied",
    },
    client,
)

# -- connection: configuration, candidates, API failures -----------------------------

TURN_SERVERS = [
    {"urls": "stun:stun.example.org:3478"},
    {
        "urls": [
            "turn:turn.example.org:3478?transport=udp",
            "turn:turn.example.org:3478?transport=tcp",
            "turns:turn.example.org:443?transport=tcp",
        ],
        "username": "u",
    },
]
CONFIG: Final = {
    "iceServers": TURN_SERVERS,
    "iceTransportPolicy": "relay",
    "bundlePolicy": "max-bundle",
    "alwaysNegotiateDataChannels": True,
}


def relay_gathered(at: float, address: str, port: int, protocol: str) -> list[Any]:
    value = {
        "candidate": candidate("relay", address, port),
        "sdpMid": "0",
        "relayProtocol": protocol,
    }
    return event("onicecandidate", "PC_0", value, at)


SELECTED_RELAY = [
    {
        "id": "T01",
        "type": "transport",
        "selectedCandidatePairId": "CP1",
        "bytesSent": 1000,
        "bytesReceived": 2000,
    },
    {
        "id": "CP1",
        "type": "candidate-pair",
        "localCandidateId": "L1",
        "remoteCandidateId": "R1",
        "totalRoundTripTime": 0.4,
        "responsesReceived": 4,
    },
    {
        "id": "L1",
        "type": "local-candidate",
        "address": "89.160.20.112",
        "port": 50001,
        "protocol": "udp",
        "candidateType": "relay",
        "relayProtocol": "tls",
        "url": "turns:turn.example.org:443?transport=tcp",
        "priority": 0,  # Chrome's TURN/TLS relay: a real 0
        "networkType": "wifi",
    },
    {
        "id": "R1",
        "type": "remote-candidate",
        "address": "89.160.20.120",
        "port": 40000,
        "candidateType": "host",
    },
]
RELAYED_EVENTS: Final = [
    event("create", "PC_0", CONFIG, 0),
    event("onicegatheringstatechange", "PC_0", "gathering", 1000),
    # the first relay of each TURN transport, timed from "gathering"
    relay_gathered(1100, "89.160.20.112", 50001, "udp"),
    relay_gathered(1250, "89.160.20.113", 50002, "tcp"),
    relay_gathered(1400, "89.160.20.114", 50003, "tls"),
    relay_gathered(1450, "89.160.20.115", 50004, "udp"),  # not the first udp one
    event("onicegatheringstatechange", "PC_0", "complete", 1500),
    event(
        "onicecandidate",
        "PC_0",
        {"candidate": candidate("srflx", "1.128.0.1", 50009)},  # ASN only (Telstra)
        1600,
    ),
    event("addIceCandidate", "PC_0", {"candidate": candidate("host", "f00d.local", 9)}, 1700),
    event("addIceCandidate", "PC_0", {"candidate": candidate("host", "81.2.69.142", 40000)}, 1705),
    event(
        "addIceCandidate", "PC_0", {"candidate": candidate("host", "89.160.20.120", 40000)}, 1710
    ),
    event("addIceCandidateOnFailure", "PC_0", "OperationError: Unknown ufrag", 1720),
    event("setLocalDescription", "PC_0", {"type": "offer", "sdp": "v=0\r\n"}, 1800),
    event("setLocalDescriptionOnFailure", "PC_0", "InvalidModificationError: m-lines", 1810),
    event("onconnectionstatechange", "PC_0", "connected", 1900),
    stats("PC_0", 2000, *SELECTED_RELAY),
]
RELAYED: Final = Known(
    "TURN configuration, relay gathering times, the first selected pair, API failures",
    "connection",
    RELAYED_EVENTS,
    {
        "configured_ice_servers": 2,
        "configured_ice_transport_policy": True,
        "configured_ice_servers_stun": True,
        "configured_ice_servers_turn_udp": True,
        "configured_ice_servers_turn_tcp": True,
        "configured_ice_servers_turns": True,
        "configured_bundle_policy": "max-bundle",
        "configured_always_negotiate_data_channels": True,
        "gathering_time_turn_udp": 100,
        "gathering_time_turn_tcp": 250,
        "gathering_time_turn_tls": 400,
        "gathered_turn_candidate": True,
        "gathered_srflx_candidate": True,
        "added_mdns_candidate": True,
        "added_host_candidate": True,
        "add_ice_candidate_failure": "OperationError: Unknown ufrag",
        "set_local_description_failure": "InvalidModificationError: m-lines",
        "first_candidate_pair_local_type": "relay",
        "first_candidate_pair_local_relay_protocol": "tls",
        "first_candidate_pair_local_relay_url": "turns:turn.example.org:443?transport=tcp",
        "first_candidate_pair_local_network_type": "wifi",
        # 0 >> 24 is 0, as is a missing priority's: ours keeps the real 0 apart
        "first_candidate_pair_local_type_preference": 0,
        "first_candidate_pair_local_priority": 0,
        # 0.4 s over 4 responses
        "average_stun_round_trip_time": 0.1,
    },
    connection,
)
LOCATED: Final = Known(
    "locations of the selected pair's candidates and of the relays, looked up",
    "connection",
    RELAYED_EVENTS,
    {
        # the selected local candidate is the first relay (89.160.20.112:50001)
        "rtcstats_location_continent": "Europe",
        "rtcstats_location_country": "Sweden",
        "rtcstats_location_city": "Linköping",
        "rtcstats_location_asn": 29518,
        "rtcstats_location_organization": "Bredband2 AB",
        # the remote one was added at 89.160.20.120 (same port as London's, another
        # address): Linköping again, in the same network
        "rtcstats_peer_location_continent": "Europe",
        "rtcstats_peer_location_country": "Sweden",
        "rtcstats_peer_location_city": "Linköping",
        "rtcstats_peer_location_asn": 29518,
        "rtcstats_peer_location_organization": "Bredband2 AB",
        # the peer's "relay" location: the last gathered candidate with a location
        # before the first getStats, here 1.128.0.1, a srflx with an ASN and no place
        "rtcstats_relay_location_country": ABSENT,
        # ours: the first relay candidate's
        "turn_location_continent": "Europe",
        "turn_location_country": "Sweden",
        "turn_location_city": "Linköping",
        "turn_location_asn": 29518,
        "turn_location_organization": "Bredband2 AB",
    },
    connection,
    geo=True,
)
ANNOTATION = {
    "rtcstatsLocation": {
        "continent": "Europe",
        "country": "Sweden",
        "city": "Linköping",
        "asn": 29518,
        "organization": "Bredband2 AB",
    }
}
MASKED_LOCAL = {**SELECTED_RELAY[2], "address": "x.x.x.x"}
MASKED: Final = Known(
    "a masked dump: locations written by ingest, candidates matched by port",
    "connection",
    [
        event(
            "onicecandidate",
            "PC_0",
            {"candidate": candidate("host", "x.x.x.x", 50000)},
            10,
            {"rtcstatsLocation": {"continent": "Africa", "country": "Wrong", "city": "Port"}},
        ),
        event(
            "onicecandidate",
            "PC_0",
            {"candidate": candidate("relay", "x.x.x.x", 50001)},
            20,
            ANNOTATION,
        ),
        stats("PC_0", 100, SELECTED_RELAY[0], SELECTED_RELAY[1], MASKED_LOCAL, SELECTED_RELAY[3]),
    ],
    {
        "rtcstats_location_city": "Linköping",
        "rtcstats_location_asn": 29518,
        "rtcstats_relay_location_continent": "Europe",
        "rtcstats_relay_location_country": "Sweden",
        "rtcstats_relay_location_city": "Linköping",
        "turn_location_city": "Linköping",
    },
    connection,
)
CLIENT_LOCATION: Final = Known(
    "the client's location, written into the metadata line by ingest",
    "client",
    [event("create", None, {}, 0)],
    {
        "location_continent": "Europe",
        "location_country": "Sweden",
        "location_city": "Linköping",
        "location_asn": 29518,
        "location_organization": "Bredband2 AB",
    },
    client,
    meta={"location": ANNOTATION["rtcstatsLocation"], "remoteAddresses": ["89.160.20.x"]},
)

# -- tracks ---------------------------------------------------------------------------


def outbound_video(at: float, width: int, height: int, frames: int) -> list[dict[str, Any]]:
    return [
        {
            "id": "OV",
            "type": "outbound-rtp",
            "kind": "video",
            "ssrc": 1,
            "packetsSent": frames * 2,
            "bytesSent": frames * 2000,
            "framesEncoded": frames,
            "frameWidth": width,
            "frameHeight": height,
            "rid": "h",
            "remoteId": "RIV",
            "mediaSourceId": "MS",
            "psnrMeasurements": 10,
            "psnrSum": {"y": 400.5, "u": 420.25, "v": 430.0},
            "qualityLimitationDurations": {"none": 2.0, "bandwidth": 1.0, "cpu": 1.0, "other": 0},
        },
        {"id": "MS", "type": "media-source", "kind": "video", "trackIdentifier": "cam-1"},
        {
            "id": "RIV",
            "type": "remote-inbound-rtp",
            "kind": "video",
            "ssrc": 1,
            "localId": "OV",
            "packetsLost": 0,
            "packetsReceivedWithEct1": 5,
            "packetsReceivedWithCe": 1,
            "packetsWithBleachedEct1Marking": 2,
        },
    ]


#: (width, height) per result: widths 640 x3, 1280 x2; heights 360 x3, 480 x2. The
#: peer's modes pair 640 with 360 (sent once); the most frequent pairs are 640x480
#: and 1280x360 (twice each), the first seen wins.
SIZES: Final = [(640, 480), (1280, 360), (640, 480), (640, 360), (1280, 360)]
VIDEO: Final = Known(
    "an outbound video layer: resolution modes, simulcast id, PSNR, L4S, score",
    "track",
    [
        event("addTrack", "PC_0", ["video", "cam-1", "Cam", "s"], 0),
        *[
            stats("PC_0", 1000 * (n + 1), *outbound_video(1000 * (n + 1), w, h, 15 * (n + 1)))
            for n, (w, h) in enumerate(SIZES)
        ],
    ],
    {
        "common_width": 640,
        "common_height": 360,
        "min_width": 640,
        "max_height": 480,
        "common_resolution": "640x480",
        "rid": "h",
        "psnr_measurements": 10,
        "psnr_sum_y": 400.5,
        "psnr_sum_u": 420.25,
        "psnr_sum_v": 430.0,
        "packets_received_with_ect1": 5,
        "packets_received_with_ce": 1,
        "packets_with_bleached_ect1_marking": 2,
        "bandwidth_quality_limitation_percentage": 0.25,
        "cpu_quality_limitation_percentage": 0.25,
        # the addTrack's track (tied by its media source), started at 0; last result 5000
        "start_time": T0,
        "track_identifier": "cam-1",
        "duration": 5000,
        "frame_count": 75,
        # 640x480 (s_res = log2(307200 / 57600) / 4 = 0.6038), 75 frames in 5 s = 15 fps
        # (s_fps = log2(15 / 3.75) / 3 = 0.6667), no freezes, limited 0.25 + 0.25 = 0.5:
        # 1 + 4 * (0.6 * 0.6038 + 0.4 * 0.6667) * 1 * (1 - 0.3 * 0.5) = 3.1384
        "video_score": pytest.approx(3.1384, abs=1e-3),
    },
    lambda features: track(features, "OV"),
)


def inbound_audio(at: float, flushes: int, received: int, lost: int) -> list[dict[str, Any]]:
    return [
        {
            "id": "T01",
            "type": "transport",
            "selectedCandidatePairId": "CP1",
        },
        {
            "id": "CP1",
            "type": "candidate-pair",
            "totalRoundTripTime": 0.4,
            "responsesReceived": 4,
        },
        {
            "id": "IA",
            "type": "inbound-rtp",
            "kind": "audio",
            "ssrc": 2,
            "codecId": "CO",
            "packetsReceived": received,
            "packetsLost": lost,
            "bytesReceived": received * 100,
            "jitterBufferFlushes": flushes,
            "jitterBufferDelay": 48.0,
            "jitterBufferEmittedCount": 960,
            "concealedSamples": 480,
            "totalSamplesReceived": 48000,
            "insertedSamplesForDeceleration": 960,
            "removedSamplesForAcceleration": 240,
        },
        {"id": "CO", "type": "codec", "mimeType": "audio/opus", "sdpFmtpLine": "useinbandfec=1"},
    ]


AUDIO_RESULTS = [
    # (time, jitterBufferFlushes, packetsReceived, packetsLost)
    (1000, 0, 100, 0),
    (2000, 1, 150, 0),  # flushes grow at 2000, 6000, 10000: every 4 s
    (6000, 2, 196, 4),
    (10000, 3, 196, 4),
]
AUDIO: Final = Known(
    "an inbound audio track: NetEq counters, periodic flushes, E-model score",
    "track",
    [stats("PC_0", at, *inbound_audio(at, f, r, lost)) for at, f, r, lost in AUDIO_RESULTS],
    {
        "jitter_buffer_flushes": 3,
        "has_periodic_jitter_buffer_flushes": True,
        "concealment_percentage": 0.01,  # 480 / 48000
        "deceleration_percentage": 0.02,  # 960 / 48000
        "acceleration_percentage": 0.005,  # 240 / 48000
        "average_jitter_buffer_delay": 0.05,  # 48 s / 960 samples
        "codec_mime_type": "audio/opus",
        # Inputs: RTT 100 ms (the connection's 0.4 s / 4 STUN responses), jitter buffer
        # 50 ms, loss 4 / (196 + 4) = 2 %, Opus (20 ms frame, 6.5 ms look-ahead).
        # Ta = 100 / 2 + 50 + 20 + 6.5 = 126.5 ms; X = log2(1.265) = 0.33914;
        # Idd = 25 * ((1 + X^6)^(1/6) - 3 (1 + (X/3)^6)^(1/6) + 2) = 0.00631;
        # Ie,eff = 0 + 95 * 2 / (2 + 25.1) = 7.01107; R = 93.2 - 0.00631 - 7.01107 = 86.1826;
        # MOS = 1 + 0.035 R + R (R - 60)(100 - R) 7e-6 = 4.2346
        "r_factor": pytest.approx(86.18, abs=0.01),
        "estimated_mos": pytest.approx(4.235, abs=0.001),
    },
    lambda features: track(features, "IA"),
)
SESSION_SCORES: Final = Known(
    "the session's worst scores: the lowest of its tracks'",
    "client",
    [*AUDIO.events, *(e if e[1] is None else [e[0], "PC_1", *e[2:]] for e in VIDEO.events)],
    {
        "worst_estimated_mos": pytest.approx(4.235, abs=0.001),
        "worst_video_score": pytest.approx(3.1384, abs=1e-3),
    },
    client,
)

CASES: Final = (
    CAPTURE,
    LONG_TRACKS,
    JITSI_CAPTURE,
    RELAYED,
    LOCATED,
    MASKED,
    CLIENT_LOCATION,
    VIDEO,
    AUDIO,
    SESSION_SCORES,
)


@pytest.fixture(scope="module")
def locator() -> Iterator[GeoLocator]:
    yield from opened_locator()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_known_values(case: Known, request: pytest.FixtureRequest) -> None:
    found = request.getfixturevalue("locator") if case.geo else None
    entity = case.pick(features_of(case.events, case.meta, found))
    for name, value in case.expected.items():
        if value is ABSENT:
            assert name not in entity, f"{name} should be absent, is {entity[name]!r}"
        else:
            assert name in entity, f"{name} missing"
            assert entity[name] == value, f"{name}: {entity[name]!r}, expected {value!r}"


def test_without_a_locator_nothing_is_located() -> None:
    """No database, no annotation: no location features (not nulls)."""
    row = connection(features_of(LOCATED.events))
    assert not [name for name in row if "location" in name]


def crafted_known() -> Iterator[tuple[Level, str]]:
    for case in CASES:
        for name, value in case.expected.items():
            if value is not ABSENT:
                yield case.level, name
