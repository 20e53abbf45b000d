"""Parity with the peer: on the fixtures where its values are meaningful, ours are its.

The peer's values are recorded in tests/data/peer-features (bench/features_parity.py
--record ran its extractor). Ours are computed from the very file the peer read (the
bench's ``peer_input``: a capture wrapped in the peer server's header and close line,
a jitsi dump converted to fileFormat 3), so both sides see the same events.

Here: every level of the rtcstats-js capture and of the rtcstats dumps; the connection
level of the converted dumps (test_converted_parity.py compares their every level, now
that the conversion writes rtcstats-js's value shapes). Every feature the peer gave must be ours with the same value, except the
differences listed in ``DELIBERATE``, each with its reason.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import pytest

from rtcstats_server.analysis.feature_list import Level, peer_names
from rtcstats_server.analysis.features.extract import extract_features
from rtcstats_server.dumps.reader import open_dump

ROOT = Path(__file__).resolve().parents[3]
RECORDED = ROOT / "tests" / "data" / "peer-features"

#: Fixtures whose every level the peer reads as it was meant to be read.
FULL: Final = (
    "rtcstats-js-2.4.0-loopback-call",
    "rtcstats-gumonly.rtcstatsdump",
    "rtcstats-gumonly.webrtc-internals",
)
#: Fixtures the peer read converted: their connection features only.
CONNECTIONS_ONLY: Final = (
    "jitsi-chrome-standard-pc-failed",
    "jitsi-chrome-standard-pc-reconnect",
    "jitsi-clienttest.legacy-import",
    "jitsi-firefox97-standard-stats-sfu",
    "jitsi-google-standard-stats-sfu",
    "jitsi-jvb-sample",
    "jitsi-safari-standard-stats",
    "jitsi-undefined-ice-candidate",
    "jitsi-rtcstats-9.7.1-loopback-call",
    "rtcstats-5.2.0-loopback-call",
)
#: (fixture, level, feature) → why ours differs from the peer's value there.
DELIBERATE: Final[dict[tuple[str, Level, str], str]] = {
    ("rtcstats-gumonly.webrtc-internals", "client", "start_time"): (
        "the peer's export reader starts the client trace at time 0 (the export has no "
        "top-level timestamp); ours at the first getUserMedia call"
    ),
    ("rtcstats-gumonly.webrtc-internals", "client", "duration"): (
        "follows from start_time: the peer's is the last call's epoch time"
    ),
    ("rtcstats-gumonly.webrtc-internals", "client", "user_agent_data"): (
        "our export reader (dumps/documents.py) keeps only the export's UserAgent"
    ),
}


def _bench() -> ModuleType:
    """bench/features_parity.py: how each fixture was given to the peer."""
    name = "features_parity_bench"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "features_parity.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def recorded(fixture: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDED / f"{fixture}.json").read_text())
    return data["features"]  # type: ignore[no-any-return]


def ours(fixture: str, workdir: Path) -> dict[str, Any]:
    bench = _bench()
    source = bench.resolve(fixture)
    target, _ = bench.peer_input(source, workdir)
    reader = open_dump(target)
    return extract_features(reader, reader.info)


def compared(fixture: str, level: Level, peer: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    """One line per peer feature of this entity that ours does not equal."""
    same = _bench().same
    problems = []
    for feature in peer_names(level).values():
        if feature.name not in peer:
            continue
        if (fixture, level, feature.name) in DELIBERATE:
            continue
        if feature.name not in mine:
            problems.append(f"{level}.{feature.name}: ours missing, peer {peer[feature.name]!r}")
        elif not same(peer[feature.name], mine[feature.name]):
            problems.append(
                f"{level}.{feature.name}: ours {mine[feature.name]!r}, peer {peer[feature.name]!r}"
            )
    return problems


def connection_pairs(
    peer: dict[str, Any], mine: dict[str, Any]
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    by_id = {c["id"]: c for c in mine["connections"]}
    return [(c, by_id.get(c["id"])) for c in peer["connections"]]


@pytest.mark.parametrize("fixture", FULL)
def test_every_level_equals_the_peer(fixture: str, tmp_path: Path) -> None:
    peer, mine = recorded(fixture), ours(fixture, tmp_path)
    problems = compared(fixture, "client", peer["client"] or {}, mine["client"])
    for theirs, found in connection_pairs(peer, mine):
        assert found is not None, f"connection {theirs['id']} missing"
        problems += compared(fixture, "connection", theirs, found)
        tracks = {t["stats_id"]: t for t in found["tracks"]}
        for track in theirs["tracks"]:
            assert track["stats_id"] in tracks, f"track {track['stats_id']} missing"
            problems += compared(fixture, "track", track, tracks[track["stats_id"]])
    assert problems == []


@pytest.mark.parametrize("fixture", CONNECTIONS_ONLY)
def test_connection_features_equal_the_peer(fixture: str, tmp_path: Path) -> None:
    peer, mine = recorded(fixture), ours(fixture, tmp_path)
    assert len(mine["connections"]) == len(peer["connections"])
    problems = []
    for theirs, found in connection_pairs(peer, mine):
        assert found is not None, f"connection {theirs['id']} missing"
        problems += compared(fixture, "connection", theirs, found)
    assert problems == []


def test_the_capture_compares_many_values(tmp_path: Path) -> None:
    """The full comparison is not vacuous: the capture gives the peer 206 values,
    every one of them compared (and equal) above."""
    peer = recorded("rtcstats-js-2.4.0-loopback-call")
    values = len(peer["client"]) + sum(
        len(c) - 1 + sum(len(t) for t in c["tracks"]) for c in peer["connections"]
    )
    assert values >= 200
    assert sum(len(c["tracks"]) for c in ours(FULL[0], tmp_path)["connections"]) == 4


def parity_known() -> set[tuple[Level, str]]:
    """The features compared here with a value the peer recorded."""
    known: set[tuple[Level, str]] = set()
    for fixture in (*FULL, *CONNECTIONS_ONLY):
        peer = recorded(fixture)
        found: set[tuple[Level, str]] = set()
        if fixture in FULL:
            found |= {("client", k) for k in peer["client"] or {}}
        for connection in peer["connections"]:
            found |= {("connection", k) for k in connection if k not in ("id", "tracks")}
            if fixture in FULL:
                found |= {("track", k) for t in connection["tracks"] for k in t}
        known |= {(level, k) for level, k in found if (fixture, level, k) not in DELIBERATE}
    return known
