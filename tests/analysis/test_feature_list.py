"""The feature list: the peer's features all there under their column names, its docs
current, and the recorded peer values (tests/data/peer-features) consistent with it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from rtcstats_server.analysis.feature_list import (
    FEATURES,
    IDENTIFIERS,
    LEVELS,
    PEER_ROWS,
    Level,
    by_level,
    peer_names,
    peer_row_counts,
    snake_case,
)
from rtcstats_server.cli import features_reference

PEER_DATA = Path(__file__).resolve().parents[1] / "data" / "peer-features"
RECORDED = sorted(PEER_DATA.glob("*.json"))

_TYPES = {
    "boolean": lambda v: type(v) is bool,
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float),
    "string": lambda v: type(v) is str,
    "object": lambda v: type(v) in (dict, list),
}
#: The peer's webrtc-internals reader starts the client at time 0 and reads the export's
#: fractional milliseconds: its client duration there is a float of about 1.7e12.
_KNOWN_ODD = {("rtcstats-gumonly.webrtc-internals", "client", "duration")}


def test_the_peers_161_features_by_level() -> None:
    assert peer_row_counts() == PEER_ROWS == {"client": 28, "connection": 69, "track": 64}
    # the <kind>Ended and <kind>ShortDuration rows are one column per kind
    assert sum(1 for f in FEATURES if f.peer is not None) == 163
    assert {f.name for f in FEATURES if f.peer_row} == {
        "audio_ended",
        "video_ended",
        "audio_short_duration",
        "video_short_duration",
    }


@pytest.mark.parametrize(
    ("camel", "column"),
    [
        ("iceConnectionTime", "ice_connection_time"),
        ("numberOfEventsNotGetStats", "number_of_events_not_get_stats"),
        ("packetsSentWithEct1", "packets_sent_with_ect1"),
        ("psnrSumY", "psnr_sum_y"),
        ("audioEnded", "audio_ended"),
        ("averageStunRoundTripTime", "average_stun_round_trip_time"),
    ],
)
def test_names_are_the_peers_columns(camel: str, column: str) -> None:
    """Columns as the peer's migrations name them (its Postgres layer's fromCamel)."""
    assert snake_case(camel) == column
    feature = next(f for f in FEATURES if f.peer == camel)
    assert feature.name == column


def test_names_are_unique_per_level_and_well_formed() -> None:
    for level in LEVELS:
        names = Counter(f.name for f in by_level(level))
        assert [n for n, c in names.items() if c > 1] == []
    for feature in FEATURES:
        assert feature.name == feature.name.lower() and " " not in feature.name
        assert feature.definition.endswith(".") and "\n" not in feature.definition
        assert feature.type in _TYPES
        if feature.peer is None:
            assert feature.peer_row is None
        if feature.beside:
            peers = {f.name for f in peer_names(feature.level).values()}
            assert set(feature.beside) <= peers, feature.name


def test_docs_list_is_generated_from_the_list() -> None:
    text = features_reference.MARKDOWN_PATH.read_text(encoding="utf-8")
    assert text == features_reference.render(text), (
        "docs/features.md is stale: run python -m rtcstats_server.cli.features_reference"
    )
    assert features_reference.listed(text) == [(f.level, f.name) for f in FEATURES]
    assert "161 features of the peer (28 client, 69 connection, 64 track" in text


def test_render_needs_its_markers() -> None:
    with pytest.raises(ValueError, match="marker"):
        features_reference.render("# no markers\n")


def _entities(features: dict[str, Any]) -> list[tuple[Level, dict[str, Any]]]:
    found: list[tuple[Level, dict[str, Any]]] = []
    if features["client"] is not None:
        found.append(("client", features["client"]))
    for connection in features["connections"]:
        found.append(("connection", {k: v for k, v in connection.items() if k != "tracks"}))
        found.extend(("track", track) for track in connection["tracks"])
    return found


def test_peer_data_was_recorded_for_every_fixture() -> None:
    names = {p.stem for p in RECORDED}
    assert {"rtcstats-js-2.4.0-loopback-call", "jitsi-google-standard-stats-sfu"} <= names
    assert len(names) == 13
    readme = (PEER_DATA / "README.md").read_text()
    assert "peer commit 406aeaedf0b0914034d25e731a451ead86a4b137" in readme


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_recorded_peer_values_fit_the_list(path: Path) -> None:
    """Every value the peer gave is a listed feature of its level, of the listed type;
    what is not listed is said in ``peer_keys_not_in_our_list``."""
    data = json.loads(path.read_text())
    known = {(f.level, f.name): f for f in FEATURES}
    unlisted = set()
    for level, values in _entities(data["features"]):
        for name, value in values.items():
            if (level, name) in IDENTIFIERS:
                continue
            feature = known.get((level, name))
            if feature is None:
                unlisted.add(name)
                continue
            assert feature.origin == "peer", name
            if (path.stem, level, name) not in _KNOWN_ODD:
                assert _TYPES[feature.type](value), (level, name, value)
    said = {snake_case(key.partition(".")[2]) for key in data["peer_keys_not_in_our_list"]}
    assert unlisted == said


def test_the_full_rtcstats_js_call_has_every_level() -> None:
    """The loopback call the peer reads best: two connections, four tracks tied to stats."""
    data = json.loads((PEER_DATA / "rtcstats-js-2.4.0-loopback-call.json").read_text())
    features = data["features"]
    assert data["peer_errors"] == [] and data["peer_notes"] == []
    assert features["client"]["called_get_user_media_combined"] is True
    pcs = {c["id"]: c for c in features["connections"]}
    assert set(pcs) == {"PC_0", "PC_1"}
    assert pcs["PC_0"]["set_local_description_role"] == "offer"
    assert pcs["PC_1"]["set_local_description_role"] == "answer"
    tracks = [(t["kind"], t["direction"]) for c in pcs.values() for t in c["tracks"]]
    assert sorted(tracks) == [
        ("audio", "inbound"),
        ("audio", "outbound"),
        ("video", "inbound"),
        ("video", "outbound"),
    ]
    assert all(t["stats_id"] for c in pcs.values() for t in c["tracks"])
