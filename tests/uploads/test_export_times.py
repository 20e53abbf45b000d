"""A webrtc-internals export uploaded (normalized to our dump, as the upload API does)
gets real times: its connections are created at their first event, so what the
summary and the features measure from creation is seconds, not the epoch."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson

from rtcstats_server.analysis.features.extract import extract_features
from rtcstats_server.analysis.summary import summarize_file
from rtcstats_server.config import QualityConfig
from rtcstats_server.dumps.events import ReadLimits
from rtcstats_server.dumps.reader import DumpReader, file_chunks
from rtcstats_server.uploads.normalize import normalize
from tests.uploads.test_upload_api import internals_export

#: 2025-03-01T09:59:59Z, the first update of ``internals_export``.
FIRST_MS = 1740823199000.0


def uploaded(tmp_path: Path, export: dict[str, Any]) -> Path:
    source, target = tmp_path / "export.json", tmp_path / "stored.rtcstats"
    source.write_bytes(orjson.dumps(export))
    normalize([source], target, "s1", file_name="export.json", limits=ReadLimits())
    return target


def test_connect_time_of_an_uploaded_export_is_from_its_first_event(tmp_path: Path) -> None:
    stored = uploaded(tmp_path, internals_export())
    events = [e for e in DumpReader(file_chunks(stored)) if e.pc_id == "1234-1"]
    # The made-up create is the connection's first event, at its first update's time.
    assert (events[0].method, events[0].timestamp) == ("create", FIRST_MS)
    summary = summarize_file(stored, QualityConfig())
    pc = summary["peer_connections"][0]
    assert pc["created_at"] == FIRST_MS
    assert pc["connect_time_ms"] == 1100.0  # connected at 10:00:00.100
    assert "slow_connect" not in {f["name"] for f in summary["findings"]}
    features = extract_features(DumpReader(file_chunks(stored)), None, None)
    connection = features["connections"][0]
    assert connection["start_time"] == FIRST_MS
    assert connection["ice_connection_time"] == 500  # checking 09:59:59.5 → connected


def test_chrome_update_times_are_read_from_their_timestamp(tmp_path: Path) -> None:
    """Chrome writes ``time`` as local time without a zone, and ``timestamp`` in ms."""
    export = copy.deepcopy(internals_export())
    connection = export["PeerConnections"]["1234-1"]
    del connection["stats"]  # no series: only the log says when things happened
    for item, offset in zip(connection["updateLog"], (0, 500, 1000, 1100), strict=True):
        item["time"] = "3/1/2025, 10:59:59 AM"
        item["timestamp"] = FIRST_MS + offset
    stored = uploaded(tmp_path, export)
    times = [(e.method, e.timestamp) for e in DumpReader(file_chunks(stored)) if e.pc_id]
    assert times == [
        ("create", FIRST_MS),
        ("createOffer", FIRST_MS),
        ("oniceconnectionstatechange", FIRST_MS + 500),
        ("oniceconnectionstatechange", FIRST_MS + 1000),
        ("onconnectionstatechange", FIRST_MS + 1100),
    ]
    pc = summarize_file(stored, QualityConfig())["peer_connections"][0]
    assert pc["connect_time_ms"] == 1100.0
