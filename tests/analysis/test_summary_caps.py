"""The quality summary stays storable whatever a client streams (issue 14, item 3):
connections past ``max_peer_connections`` are counted, not listed; client strings are
cut; values no store can hold are dropped; the whole fits ``SUMMARY_MAX_BYTES``."""

from __future__ import annotations

import json
from typing import Any

import bson
import orjson

from rtcstats_server.analysis.interpreter import MAX_TRACKS
from rtcstats_server.analysis.summary import (
    MAX_FINDINGS,
    MAX_ID_CHARS,
    SUMMARY_MAX_BYTES,
    record_fields,
    summarize_chunks,
)
from rtcstats_server.config import QualityConfig
from rtcstats_server.dumps.codecs import compress_frame
from rtcstats_server.metadata.record import MAX_RECORD_BYTES

T0 = 1_700_000_000_000


def dump(events: list[list[Any]]) -> list[bytes]:
    """A stored dump of the 2.0 dialect (absolute times) holding ``events``."""
    lines = ["RTCStatsDump", json.dumps({"clientProtocol": "2.0", "userAgent": "x" * 600})]
    lines += [json.dumps(event) for event in events]
    return [compress_frame(("\n".join(lines) + "\n").encode(), 3)]


def failing_connections(count: int, pc_id: str = "PC_{n}") -> list[list[Any]]:
    events: list[list[Any]] = []
    for n in range(count):
        name = pc_id.format(n=n)
        events.append(["create", name, {}, T0 + n])
        for state in ("checking", "connected", "disconnected", "failed"):
            events.append(["oniceconnectionstatechange", name, state, T0 + n])
            events.append(["onconnectionstatechange", name, state, T0 + n])
    return events


def test_twenty_thousand_connections_are_counted_not_listed() -> None:
    config = QualityConfig()
    summary = summarize_chunks(dump(failing_connections(20_000)), config)
    assert summary["pc_count"] == 20_000
    assert len(summary["peer_connections"]) == config.max_peer_connections
    assert summary["truncated"] is True
    assert summary["omitted"]["peer_connections"] == 20_000 - config.max_peer_connections
    assert summary["untracked_peer_connections"]["ice_failed"] == 20_000 - 50
    assert len(summary["findings"]) == MAX_FINDINGS
    # every kind of problem is still listed, and counted for the uncounted connections
    kinds = {f["name"] for f in summary["findings"]}
    assert {"ice_failed", "connection_failed", "connection_dropped"} <= kinds
    assert any(f["pc_id"] is None and "19950 further" in f["detail"] for f in summary["findings"])
    fields = record_fields(summary)
    assert len(orjson.dumps(fields["quality"])) < SUMMARY_MAX_BYTES
    assert fields["pc_count"] == 20_000
    assert {"ice_failed", "connection_failed"} <= set(fields["findings"])


def test_a_small_session_is_not_truncated() -> None:
    summary = summarize_chunks(dump(failing_connections(3)), QualityConfig())
    assert summary["truncated"] is False and summary["omitted"] == {}
    assert len(summary["peer_connections"]) == 3


def test_client_strings_are_cut_and_odd_kinds_ignored() -> None:
    long_id = "P" * 100_000
    reports = {
        f"in{n}": {"type": "inbound-rtp", "kind": f"kind-{n}-" + "k" * 1000, "packetsReceived": 5}
        for n in range(300)
    }
    events = [
        ["create", long_id, {}, T0],
        ["onconnectionstatechange", long_id, "s" * 10_000, T0 + 1],
        ["getstats", long_id, reports, T0 + 2],
        ["navigator.mediaDevices.getUserMediaOnFailure", None, {"name": "E" * 50_000}, T0 + 3],
    ]
    summary = summarize_chunks(dump(events), QualityConfig())
    (pc,) = summary["peer_connections"]
    assert pc["pc_id"] == long_id[:MAX_ID_CHARS]
    assert pc["media"] == {}  # no audio or video: nothing to summarize
    assert len(pc["states"]["connection"][0]["state"]) == MAX_ID_CHARS
    assert len(summary["media_failures"][0]["error"]) == 100
    assert len(summary["client"]["user_agent"]) == 512
    assert len(orjson.dumps(summary)) < 20_000


def test_numbers_no_store_can_hold_are_dropped() -> None:
    """BSON holds int64 only; packet counters of 1e300 made OverflowError in PyMongo."""
    reports = {
        "in": {"type": "inbound-rtp", "kind": "video", "packetsReceived": 1e300},
        "out": {"type": "outbound-rtp", "kind": "audio", "packetsSent": 18446744073709551615},
    }
    events = [["create", "PC_0", {}, T0], ["getstats", "PC_0", reports, T0 + 1]]
    fields = record_fields(summarize_chunks(dump(events), QualityConfig()))
    document = bson.encode({"_id": "x", **fields})  # raises on anything Mongo refuses
    assert len(document) < MAX_RECORD_BYTES
    media = fields["quality"]["peer_connections"][0]["media"]
    assert media["recv_video"]["packets"] is None
    assert media["send_audio"]["packets"] is None


def test_tracks_past_the_cap_are_counted() -> None:
    """An SFU connection with more tracks than the interpreter follows (MAX_TRACKS):
    the first ones are summarized, the rest counted, the summary says truncated."""
    reports = {
        f"in{n}": {"type": "inbound-rtp", "kind": "audio", "ssrc": n, "packetsReceived": 10}
        for n in range(MAX_TRACKS + 44)
    }
    events = [["create", "PC_0", {}, T0], ["getstats", "PC_0", reports, T0 + 1]]
    summary = summarize_chunks(dump(events), QualityConfig())
    (pc,) = summary["peer_connections"]
    assert pc["media"]["recv_audio"]["streams"] == MAX_TRACKS
    assert pc["media"]["recv_audio"]["packets"] == 10 * MAX_TRACKS
    assert summary["omitted"] == {"tracks": 44} and summary["truncated"] is True
