"""Features stay bounded and never fail, whatever a client sent."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtcstats_server.analysis.features.connection import MAX_TRACK_ROWS
from rtcstats_server.analysis.features.extract import DEFAULT_MAX_CONNECTIONS, FEATURES_MAX_BYTES
from rtcstats_server.analysis.features.values import MAX_TEXT
from tests.analysis.features.crafted import event, features_of, stats


def inbound(n: int) -> dict[str, Any]:
    return {
        "id": f"IN{n}",
        "type": "inbound-rtp",
        "kind": "video",
        "ssrc": n,
        "packetsReceived": 10,
        "bytesReceived": 1000,
        "decoderImplementation": "x" * 2000,
        "frameWidth": 640,
        "frameHeight": 360,
    }


def test_connections_past_the_cap_are_counted_not_listed() -> None:
    events = [event("create", f"PC_{n}", {}, n) for n in range(DEFAULT_MAX_CONNECTIONS + 30)]
    features = features_of(events)
    assert len(features["connections"]) == DEFAULT_MAX_CONNECTIONS
    assert features["omitted"] == {"connections": 30}


def test_tracks_past_the_cap_are_counted_and_strings_cut() -> None:
    reports = [inbound(n) for n in range(MAX_TRACK_ROWS + 6)]
    features = features_of([stats("PC_0", 0, *reports), stats("PC_0", 1000, *reports)])
    tracks = features["connections"][0]["tracks"]
    assert len(tracks) == MAX_TRACK_ROWS
    assert features["omitted"] == {"tracks": 6}
    assert {len(t["decoder_implementation"]) for t in tracks} == {MAX_TEXT}


def test_the_whole_stays_under_its_size() -> None:
    """50 connections of 64 tracks with long strings would take megabytes: connections
    are dropped from the end, and counted."""
    reports = [inbound(n) for n in range(MAX_TRACK_ROWS)]
    events = [stats(f"PC_{n}", 0, *reports) for n in range(DEFAULT_MAX_CONNECTIONS)]
    features = features_of(events)
    assert len(orjson.dumps(features)) <= FEATURES_MAX_BYTES
    kept = len(features["connections"])
    assert 0 < kept < DEFAULT_MAX_CONNECTIONS
    assert features["omitted"]["connections"] == DEFAULT_MAX_CONNECTIONS - kept


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_methods = st.sampled_from(
    [
        "create",
        "onicecandidate",
        "addIceCandidate",
        "setLocalDescription",
        "setLocalDescriptionOnSuccess",
        "setRemoteDescription",
        "onconnectionstatechange",
        "oniceconnectionstatechange",
        "onicegatheringstatechange",
        "onsignalingstatechange",
        "createOffer",
        "addTrack",
        "ontrack",
        "addTransceiver",
        "replaceTrack",
        "transceiverAdded",
        "MediaStreamTrack.onunmute",
        "MediaStreamTrack.onended",
        "navigator.mediaDevices.getUserMedia",
        "navigator.mediaDevices.getUserMediaOnSuccess",
        "navigator.mediaDevices.getUserMediaOnFailure",
        "websocket",
        "addIceCandidateOnFailure",
    ]
)
_report_types = st.sampled_from(
    ["inbound-rtp", "outbound-rtp", "transport", "candidate-pair", "local-candidate", "codec"]
)


@st.composite
def _events(draw: st.DrawFn) -> list[list[Any]]:
    events: list[list[Any]] = []
    for at in range(draw(st.integers(1, 25))):
        pc = draw(st.sampled_from([None, "PC_0", "PC_1"]))
        if pc is not None and draw(st.booleans()):
            reports = draw(
                st.lists(
                    st.fixed_dictionaries(
                        {"id": st.sampled_from(["A", "B", "C", "D"]), "type": _report_types},
                        optional={
                            "kind": st.sampled_from(["audio", "video", 3]),
                            "selectedCandidatePairId": _json,
                            "localCandidateId": _json,
                            "codecId": _json,
                            "frameWidth": _json,
                            "frameHeight": _json,
                            "packetsReceived": _json,
                            "qualityLimitationDurations": _json,
                            "psnrSum": _json,
                            "jitterBufferFlushes": _json,
                            "tlsVersion": _json,
                            "priority": _json,
                            "mediaSourceId": _json,
                            "trackIdentifier": _json,
                        },
                    ),
                    max_size=4,
                )
            )
            events.append(stats(pc, at * 100, *reports))
        else:
            events.append(event(draw(_methods), pc, draw(_json), at * 100))
    return events


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_events())
def test_any_values_give_features_without_failing(events: list[list[Any]]) -> None:
    features = features_of(events)
    assert len(orjson.dumps(features)) <= FEATURES_MAX_BYTES
    assert set(features) <= {"version", "client", "connections", "omitted"}
