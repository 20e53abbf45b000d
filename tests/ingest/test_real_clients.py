"""The real rtcstats clients, in headless chromium, streaming a loopback call into a
running collector: what they send is what the dump and the record hold, and the jitsi
client resumes one session after the server drops its socket."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from rtcstats_server.sessions.connection import CloseRequest
from rtcstats_server.sessions.state import State
from tests.services.browser import BrowserBed, browser_bed
from tests.services.collector import RunningCollector, wait_until

pytestmark = pytest.mark.browser

#: The 2015 client calls the callback-style getStats Chromium removed; it throws each tick.
LEGACY_GETSTATS_ERROR = "Failed to execute 'getStats' on 'RTCPeerConnection'"


@pytest.fixture
async def bed() -> AsyncIterator[BrowserBed]:
    async with browser_bed() as started:
        yield started


def read_dump(text: str) -> tuple[dict[str, Any], list[list[Any]], list[Any]]:
    """(metadata, event lines, close line) of a decompressed dump."""
    lines = text.splitlines()
    assert lines[0] == "RTCStatsDump"
    return json.loads(lines[1]), [json.loads(line) for line in lines[2:-1]], json.loads(lines[-1])


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def assert_loopback_call(events: list[list[Any]], failure: str) -> None:
    """Both peer connections, the one failed setRemoteDescription, both closed."""
    methods = Counter(event[0] for event in events)
    assert {e[1] for e in events if e[0] == "create"} == {"PC_0", "PC_1"}
    assert {e[1] for e in events if e[0] == "close"} >= {"PC_0", "PC_1"}
    assert methods["setRemoteDescriptionOnSuccess"] == 2
    assert [e[1:3] for e in events if e[0] == "setRemoteDescriptionOnFailure"] == [
        ["PC_1", failure]
    ]
    assert methods["navigator.mediaDevices.getUserMediaOnSuccess"] == 1
    assert "connected" in {e[2] for e in events if e[0] == "onconnectionstatechange"}


def merged_kinds(
    getstats: list[list[Any]], pc: str, kind_of: str, counter: str | None = None
) -> set[str]:
    """Media kinds of ``kind_of`` reports for ``pc``, merging each report's deltas;
    with ``counter``, only kinds whose counter ended above zero."""
    reports: dict[str, dict[str, Any]] = {}
    for _, pc_id, value, *_ in getstats:
        if pc_id != pc:
            continue
        for report_id, delta in value.items():
            if isinstance(delta, dict):
                reports.setdefault(report_id, {}).update(delta)
    return {
        r["kind"]
        for r in reports.values()
        if r.get("type") == kind_of and (counter is None or r.get(counter, 0) > 0)
    }


async def stored_record(collector: RunningCollector, **match: Any) -> dict[str, Any]:
    return await collector.wait_for_record(
        lambda r: r["state"] == "stored" and all(r[k] == v for k, v in match.items())
    )


async def test_jitsi_client_call_is_stored(collector: RunningCollector, bed: BrowserBed) -> None:
    async with bed.call("jitsi", collector.ws_url, conf="room-jitsi", user="alice") as page:
        state = await page.finished(timeout=30)
        assert page.errors == []
    (socket,) = state["sockets"]
    assert socket["protocol"] == "3.1_STANDARD"
    # The client reads the code of our close frame: 3001 echoed means it will not reconnect.
    assert state["clientCloses"] == [3001]
    client_id = query_of(socket["url"])["statsSessionId"]

    record = await stored_record(collector, client_session_id=client_id)
    assert record["dialect"] == "3.1_STANDARD"
    assert (record["conference_id"], record["user_id"]) == ("room-jitsi", "alice")
    assert (record["end_reason"], record["close_code"]) == ("conference_left", 3001)
    assert record["connections"] == 1

    meta, events, close = read_dump(await collector.dump_text(record["id"]))
    assert meta["clientProtocol"] == "3.1_STANDARD"
    assert meta["url"].startswith("/room-jitsi?statsSessionId=")
    assert events[0][:3] == [
        "identity",
        None,
        {
            "confName": "room-jitsi",
            "displayName": "alice",
            "meetingUniqueId": "mu-room-jitsi",
            "applicationName": "rtcstats-collector-tests",
            "endpointId": "ep-loopback",
        },
    ]
    assert_loopback_call(events, state["failure"])
    # Every entry the client sent, once and in order.
    assert [event[4] for event in events] == socket["sentSeqs"] == list(range(1, len(events) + 1))
    assert events[-1][3] - events[0][3] >= 5000
    getstats = [event for event in events if event[0] == "getstats"]
    assert {pc: sum(e[1] == pc for e in getstats) >= 4 for pc in ("PC_0", "PC_1")} == {
        "PC_0": True,
        "PC_1": True,
    }
    # Reports are deltas after their first appearance; merged, media flowed both ways.
    assert merged_kinds(getstats, "PC_0", "outbound-rtp") == {"audio", "video"}
    received = merged_kinds(getstats, "PC_1", "inbound-rtp", counter="bytesReceived")
    assert received == {"audio", "video"}
    assert close[:3] == ["close", None, 3001]


async def test_legacy_client_call_is_stored(collector: RunningCollector, bed: BrowserBed) -> None:
    async with bed.call("legacy", collector.ws_url, conf="room-legacy", user="carol") as page:
        state = await page.finished(timeout=30)
        assert page.errors, "the 2015 client's getStats should fail in this Chromium"
        assert [e for e in page.errors if LEGACY_GETSTATS_ERROR not in e] == []
    (socket,) = state["sockets"]
    assert socket["protocol"] == "2.0"

    record = await stored_record(collector, dialect="2.0")
    assert (record["conference_id"], record["user_id"]) == ("room-legacy", "carol")
    assert record["end_reason"] == "client_closed"
    assert record["close_code"] == 1005  # it closes without a code

    meta, events, close = read_dump(await collector.dump_text(record["id"]))
    assert meta["clientProtocol"] == "2.0"
    assert meta["url"] == "/room-legacy/call.html"  # the 2015 client appends the page path
    assert events[0][:3] == [
        "identity",
        None,
        {
            "confName": "room-legacy",
            "displayName": "carol",
            "meetingUniqueId": "mu-room-legacy",
            "applicationName": "rtcstats-collector-tests",
            "endpointId": "ep-loopback",
        },
    ]
    assert_loopback_call(events, state["failure"])
    assert len(events) == socket["sentMessages"]
    assert all(len(event) == 4 for event in events)  # absolute timestamps, no seq
    assert [event for event in events if event[0] == "getstats"] == []
    assert events[-1][3] - events[0][3] >= 5000
    assert close[:3] == ["close", None, 1005]


async def test_jitsi_client_resumes_after_server_drops_socket(
    collector: RunningCollector, bed: BrowserBed
) -> None:
    async with bed.call(
        "jitsi", collector.ws_url, conf="room-resume", user="dave", seconds=2, mode="resume"
    ) as page:
        # The page has traced 1100 application events in acknowledged batches of 100.
        state = await page.wait_phase("drop-me", timeout=30)
        client_id = query_of(state["sockets"][0]["url"])["statsSessionId"]
        session = collector.manager.by_client[client_id]
        connection = session.connection
        assert connection is not None
        connection.close(CloseRequest(1011, "test drops the socket"))
        await wait_until(lambda: session.state is State.DETACHED, what="detached")

        await page.wait_phase("resumed", timeout=20)  # it retries after 1 to 11 s
        assert session.state is State.STREAMING
        assert session.connections == 2
        state = await page.finished(timeout=20)
        assert page.errors == []

    first, second = state["sockets"]
    assert state["clientCloses"] == [1011, 3001]
    assert query_of(first["url"]) == {"statsSessionId": client_id, "isReconnect": "false"}
    assert query_of(second["url"]) == {"statsSessionId": client_id, "isReconnect": "true"}
    acks = [sn["value"] for sn in first["sn"] if sn["state"] == "ack"]
    assert acks == sorted(acks) and acks[-1] >= 1100
    # We answer the reconnect with the last seq we stored; the client replays from the
    # next one: its buffer was trimmed on our acks and on that answer, nothing repeats.
    opening = second["sn"][0]
    assert opening["state"] == "initial" and opening["value"] >= acks[-1]
    assert second["sentSeqs"][0] == opening["value"] + 1

    # The client is done once its close is sent; our finish may still be storing.
    await wait_until(lambda: session.state is State.QUEUED, what="session stored and queued")
    found = await collector.get_json(f"/v1/sessions?client_session_id={client_id}")
    (record,) = found["sessions"]
    assert record["id"] == session.id and record["state"] == "stored"
    assert record["connections"] == 2
    assert record["dropped_messages"] == 0
    assert record["end_reason"] == "conference_left"

    _, events, _ = read_dump(await collector.dump_text(record["id"]))
    seqs = [event[4] for event in events]
    last_sent = max(first["sentSeqs"] + second["sentSeqs"])
    assert seqs == list(range(1, last_sent + 1))  # no duplicate, no gap, nothing lost
    assert record["last_seq"] == last_sent
    burst = [event[2]["i"] for event in events if event[0] == "harness.burst"]
    assert burst == list(range(1100))
    # Traced while disconnected, after more than 1000 entries: only a trimmed buffer keeps them.
    offline = [event[2]["i"] for event in events if event[0] == "harness.offline"]
    assert offline == list(range(20))
    assert_loopback_call(events, state["failure"])
