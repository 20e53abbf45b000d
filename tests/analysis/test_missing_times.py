"""A time of 0 in a dump is a missing time (an export that had none), not 1970: the
summary, the features and the connection card never measure from or to it."""

from __future__ import annotations

from rtcstats_server.analysis.connection_card import ConnectionCard
from rtcstats_server.analysis.summary import summarize_chunks
from rtcstats_server.config import QualityConfig
from rtcstats_server.dumps.reader import Event
from tests.analysis.features.crafted import T0, connection, dump_bytes, event, features_of

#: The connection was created, and began checking and connecting, at a missing time.
EVENTS = [
    event("create", "PC_0", {}, -T0),
    event("oniceconnectionstatechange", "PC_0", "checking", -T0),
    event("onconnectionstatechange", "PC_0", "connecting", -T0),
    event("oniceconnectionstatechange", "PC_0", "connected", 900),
    event("onconnectionstatechange", "PC_0", "connected", 1000),
    event("close", "PC_0", None, 5000),
]


def test_no_connect_time_is_measured_from_a_missing_create_time() -> None:
    summary = summarize_chunks([dump_bytes(EVENTS)], QualityConfig())
    pc = summary["peer_connections"][0]
    assert pc["connected"] and pc["connected_at"] == T0 + 1000
    assert pc["created_at"] is None and pc["connect_time_ms"] is None
    assert "slow_connect" not in {f["name"] for f in summary["findings"]}
    # The same connection created at a real time: measured, and slow past the threshold.
    created = [event("create", "PC_0", {}, -12_000), *EVENTS[1:]]
    summary = summarize_chunks([dump_bytes(created)], QualityConfig(slow_connect_s=10))
    assert summary["peer_connections"][0]["connect_time_ms"] == 13_000.0
    assert "slow_connect" in {f["name"] for f in summary["findings"]}


def test_features_do_not_measure_from_a_missing_time() -> None:
    row = connection(features_of(EVENTS))
    assert "ice_connection_time" not in row and "connection_time" not in row
    assert row["start_time"] == T0 + 900  # its first real time
    assert row["duration"] == 4100
    # Real times: measured as before.
    timed = [
        event("create", "PC_0", {}, 0),
        event("oniceconnectionstatechange", "PC_0", "checking", 100),
        event("onconnectionstatechange", "PC_0", "connecting", 100),
        *EVENTS[3:],
    ]
    row = connection(features_of(timed))
    assert row["ice_connection_time"] == 800 and row["connection_time"] == 900


def test_card_has_no_time_to_connect_from_or_to_a_missing_time() -> None:
    card = ConnectionCard()
    card.event(Event(0.0, "onconnectionstatechange", "PC_0", "connected"))
    assert card.result()["time_to_connect_ms"] is None
    card.event(Event(T0, "create", "PC_0", {}))
    card.event(Event(T0 + 250, "oniceconnectionstatechange", "PC_0", "connected"))
    assert card.result()["time_to_connect_ms"] == 250.0
