"""The reader's per-peer-connection state stays within its budget, and says where it
could not: a connection whose state was dropped gets a dumpError before its next event.
The fileFormat 3 encoder keeps its per-connection state within the same budget."""

from __future__ import annotations

import io

import orjson

from rtcstats_server.dumps.connections import MAX_REPORTS
from rtcstats_server.dumps.descriptions import MAX_PENDING, DescriptionState
from rtcstats_server.dumps.encode import MAX_IDS, StatsEncoder, to_rtcstats
from rtcstats_server.dumps.events import ERROR_METHOD, ReadLimits
from rtcstats_server.dumps.getstats import RtcstatsJsStats
from rtcstats_server.dumps.reader import DumpReader, Event

T0 = 1_700_000_000_000
BUDGET = 1 << 20
SMALL = ReadLimits(max_state_bytes=BUDGET)


def jitsi_dump(entries: list[tuple[str, dict[str, object]]]) -> bytes:
    """A jitsi on-disk dump: one getstats line per (pc, reports), a millisecond apart."""
    lines = [orjson.dumps(["connectionInfo", None, {"clientProtocol": "3.1_STANDARD"}])]
    for index, (pc_id, reports) in enumerate(entries):
        lines.append(orjson.dumps(["getstats", pc_id, reports, T0 + index]))
    return b"\n".join(lines) + b"\n"


def inbound(packets: int, kind: str | None = "audio") -> dict[str, object]:
    report: dict[str, object] = {"type": "inbound-rtp", "timestamp": 0, "packetsReceived": packets}
    if kind is not None:
        report["kind"] = kind
    return report


def crowd(count: int) -> list[tuple[str, dict[str, object]]]:
    return [(f"PC_{i}", {"IT": inbound(i)}) for i in range(count)]


def test_many_connections_stay_within_the_budget() -> None:
    reader = DumpReader([jitsi_dump(crowd(20_000))], limits=SMALL)
    held = []
    for event in reader:
        assert event.method == "getStats"
        assert event.stats["IT"]["packetsReceived"] == int(event.pc_id[3:])  # each complete
        held.append(reader.peers.states.held)
    assert max(held) <= BUDGET
    assert reader.peers.states.dropped > 10_000 and len(reader.peers.states) < 2_000
    assert reader.errors == []  # none came back: nothing is missing


def test_a_connection_back_after_its_state_was_dropped_is_marked() -> None:
    # PC_A's second result leaves out ``kind``: unchanged since its first.
    entries = [("PC_A", {"IT": inbound(1)}), *crowd(5_000), ("PC_A", {"IT": inbound(2, None)})]
    data = jitsi_dump(entries)

    def last_two(limits: ReadLimits) -> tuple[DumpReader, list[Event]]:
        reader = DumpReader([data], limits=limits)
        return reader, list(reader)[-2:]

    reader, (before, last) = last_two(ReadLimits())  # the default budget holds all
    assert before.method == "getStats" and last.stats["IT"]["kind"] == "audio"
    assert reader.errors == []
    reader, (marker, last) = last_two(SMALL)
    assert marker.method == ERROR_METHOD and "'PC_A'" in marker.value
    assert "dropped" in marker.value and marker.line == last.line
    assert reader.errors == [marker.value]
    assert last.stats["IT"]["packetsReceived"] == 2 and "kind" not in last.stats["IT"]


def test_one_connection_that_keeps_adding_reports_is_started_afresh() -> None:
    """rtcstats-js: an absent report is unchanged, so a client naming new ones forever
    grows its connection's state forever (and every result rebuilds all of them)."""
    lines = [orjson.dumps([39, None, {}, T0])]
    for index in range(200):
        delta: dict[str, object] = {f"{index}-{n}": {"type": 2, "1": n} for n in range(50)}
        delta["t"] = T0 + index
        lines.append(orjson.dumps(["g", "PC_0", delta, 1]))
    reader = DumpReader([b"\n".join(lines)])
    sizes, markers = [], []
    for event in reader:
        if event.method == ERROR_METHOD:
            markers.append(event)
        elif event.is_stats:
            sizes.append(len(event.stats))
    # The result that goes past the cap is whole; the state is dropped after it.
    assert max(sizes) == MAX_REPORTS + 50
    assert len(markers) == 200 // (MAX_REPORTS // 50 + 1)  # each time it went past
    assert sizes[MAX_REPORTS // 50 + 1] == 50  # and starts from nothing again
    assert all("more state than one connection may" in m.value for m in markers)


def test_calls_awaiting_their_result_are_bounded() -> None:
    state = DescriptionState()
    offer = {"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP 111\r\n"}
    for request in range(1000):
        state.apply("setLocalDescription", offer, f"req-{request}")
    assert len(state.pending) == MAX_PENDING
    assert state.held_chars() == MAX_PENDING * len(offer["sdp"])


def test_encoders_keep_within_the_budget_and_never_reuse_a_short_id() -> None:
    # PC_A's first report is gone from its second result, a different report instead.
    first = {"IT_old": {**inbound(1), "jitter": 0.5}}
    second = {"IT_new": inbound(7, "video")}
    data = jitsi_dump([("PC_A", first), *crowd(5_000), ("PC_A", second)])
    out = io.BytesIO()
    result = to_rtcstats(DumpReader([data], limits=SMALL), out)
    assert result.dropped_encoders > 3_000 and result.events == 5_002
    back = [e for e in DumpReader([out.getvalue()], strict=True) if e.pc_id == "PC_A"]
    assert len(back) == 2
    reports = list(back[1].stats.values())
    # The reader of the converted dump still holds the first report (its removal could
    # not be said once PC_A's encoder was dropped), but the new one is not mixed into it.
    assert {r["packetsReceived"] for r in reports} == {1, 7}
    new = next(r for r in reports if r["packetsReceived"] == 7)
    assert new["kind"] == "video" and "jitter" not in new


def test_an_encoder_whose_ids_never_repeat_starts_its_numbering_over() -> None:
    encoder = StatsEncoder()
    decoder = RtcstatsJsStats()
    for index in range(MAX_IDS + 500):
        reports = {f"R{index}": {"type": "codec", "timestamp": index, "payloadType": index}}
        decoded = decoder.apply(encoder.encode(reports))
        assert [r["payloadType"] for r in decoded.values()] == [index]
        assert len(encoder.ids) <= MAX_IDS + 1
