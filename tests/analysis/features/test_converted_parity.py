"""The peer's tools read our fileFormat 3 conversions correctly (issue 16, item 4).

The peer's feature extractor (``packages/rtcstats-features`` of github rtcstats/rtcstats,
run by ``bench/peer_features.mjs``) read each dump of another dialect as ``?format=
rtcstats`` and ``rtcstats-server convert --to rtcstats`` give it; its values are recorded
in tests/data/peer-features (``python bench/features_parity.py --record``: CI has no
peer, so the outputs are test data and the bench is the script that makes them). Here:
its times are the dump's (not 2071: the first event's epoch time, then deltas), it reads
every level (a page-level ``create``, tracks as ``[kind, id, ...]``), and at every level
its values are ours. When node and a checkout of the peer are present (``RTCSTATS_PEER``,
default /work/peer), the extractor is also run on a conversion made now.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pytest

from rtcstats_server.analysis.features.extract import extract_features
from rtcstats_server.dumps.encode import write_rtcstats
from rtcstats_server.dumps.reader import DumpReader
from tests.analysis.features.test_parity import (
    ROOT,
    compared,
    connection_pairs,
    ours,
    recorded,
)

#: Fixtures the peer read converted (bench/features_parity.py's ``peer_input``).
CONVERTED: Final = (
    "jitsi-chrome-standard-pc-failed",
    "jitsi-chrome-standard-pc-reconnect",
    "jitsi-clienttest.legacy-import",
    "jitsi-firefox97-standard-stats-sfu",
    "jitsi-google-standard-stats-sfu",
    "jitsi-safari-standard-stats",
    "jitsi-undefined-ice-candidate",
    "jitsi-rtcstats-9.7.1-loopback-call",
    "rtcstats-5.2.0-loopback-call",
)
#: 2012-01-01 and 2035-01-01 in epoch ms: a session's time, whatever the fixture.
SANE: Final = (1_325_376_000_000, 2_051_222_400_000)
PEER: Final = Path(os.environ.get("RTCSTATS_PEER", "/work/peer"))


def sane(when: float) -> bool:
    return SANE[0] <= when <= SANE[1]


@pytest.mark.parametrize("fixture", CONVERTED)
def test_the_peer_reads_every_level_with_our_values(fixture: str, tmp_path: Path) -> None:
    data = json.loads((ROOT / "tests" / "data" / "peer-features" / f"{fixture}.json").read_text())
    assert data["peer_input"].startswith("converted to fileFormat 3")
    assert data["peer_errors"] == []  # its client extractor threw on the raw jitsi shapes
    peer, mine = recorded(fixture), ours(fixture, tmp_path)
    assert sane(peer["client"]["start_time"])
    assert peer["client"]["get_user_media_success_count"] >= 1
    problems = compared(fixture, "client", peer["client"], mine["client"])
    assert len(peer["connections"]) == len(mine["connections"])
    for theirs, found in connection_pairs(peer, mine):
        assert found is not None, f"connection {theirs['id']} missing"
        assert sane(theirs["start_time"])
        problems += compared(fixture, "connection", theirs, found)
        tracks = {t["stats_id"]: t for t in found["tracks"]}
        for track in theirs["tracks"]:
            assert track["kind"] in ("audio", "video")  # not "a"/"v": a string read by index
            assert sane(track["start_time"])
            if track["stats_id"] is not None:  # the peer tied it to its stats
                assert track["stats_id"] in tracks, f"track {track['stats_id']} missing"
                problems += compared(fixture, "track", track, tracks[track["stats_id"]])
    assert problems == []


def test_tracks_are_tied_to_their_stats_where_the_ids_meet() -> None:
    """The jitsi 9.7.1 capture names its tracks with the ids its reports carry: the peer
    ties all four, and computes their features."""
    peer = recorded("jitsi-rtcstats-9.7.1-loopback-call")
    tracks = [t for c in peer["connections"] for t in c["tracks"]]
    assert len(tracks) == 4 and all(t["stats_id"] is not None for t in tracks)
    assert {t["kind"] for t in tracks} == {"audio", "video"}
    assert any(t.get("frame_count", 0) > 0 for t in tracks)


def test_the_peer_run_now_on_a_converted_jitsi_dump(fixtures_dir: Path, tmp_path: Path) -> None:
    if shutil.which("node") is None or not (PEER / "packages" / "rtcstats-features").is_dir():
        pytest.skip(f"node and a checkout of the peer at {PEER} (RTCSTATS_PEER) are needed")
    source = fixtures_dir / "real" / "jitsi-safari-standard-stats.jsonl"
    target = tmp_path / "safari.rtcstats"
    with target.open("wb") as out:
        write_rtcstats(source, out)
    done = subprocess.run(
        ["node", str(ROOT / "bench" / "peer_features.mjs"), str(PEER), str(target)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    peer: dict[str, Any] = json.loads(done.stdout)
    assert peer["errors"] == [] and peer["notes"] == []
    started = datetime.fromtimestamp(peer["client"]["startTime"] / 1000, UTC)
    assert started.isoformat() == "2020-11-12T16:42:53.960000+00:00"
    reader = DumpReader([target.read_bytes()])
    mine = extract_features(reader, reader.info)
    assert peer["client"]["startTime"] == mine["client"]["start_time"]
    assert peer["client"]["duration"] == mine["client"]["duration"]
    (connection,) = peer["connections"]
    assert connection["iceConnectionTime"] == mine["connections"][0]["ice_connection_time"] == 319
    assert connection["startTime"] == mine["connections"][0]["start_time"]
    assert {t["kind"] for t in connection["tracks"]} == {"audio", "video"}


def test_the_peer_tools_read_the_same_times_as_our_reader(fixtures_dir: Path) -> None:
    """dump-importer's ``readRTCStatsDump`` adds each line's last element to the time
    before it: read that way, a conversion gives our reader's times."""
    out = io.BytesIO()
    write_rtcstats(fixtures_dir / "real" / "jitsi-chrome-standard-pc-reconnect.jsonl", out)
    lines = out.getvalue().splitlines()[2:]
    times: list[float] = []
    for line in lines:
        times.append(json.loads(line)[-1] + (times[-1] if times else 0))
    assert times == [e.timestamp for e in DumpReader([out.getvalue()])]
    assert all(sane(t) for t in times)
