"""Resume, acknowledgement, idle and grace timeouts, drain: a session's life over
real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.services.collector import RunningCollector, run_collector, wait_until

SID = "resume-test-1"


def entry(seq: int) -> str:
    data = json.dumps(["getstats", "PC_0", {"n": seq}, 1_700_000_000_000 + seq, seq])
    return json.dumps({"statsSessionId": SID, "type": "stats-entry", "data": data})


def url(collector: RunningCollector, reconnect: bool) -> str:
    flag = "true" if reconnect else "false"
    return f"{collector.ws_url}/room?statsSessionId={SID}&isReconnect={flag}"


@pytest.fixture
async def quick(tmp_path: Path) -> AsyncIterator[RunningCollector]:
    settings = {
        "ingest": {"ack_every_entries": 50, "idle_timeout_s": 1.0, "resume_grace_s": 30},
        "dumps": {"flush_interval_s": 0.2},
    }
    async with run_collector(tmp_path / "data", settings) as running:
        yield running


async def read_sn(ws: aiohttp.ClientWebSocketResponse) -> dict[str, object]:
    msg = await ws.receive_json(timeout=5)
    assert msg["type"] == "sn"
    body: dict[str, object] = msg["body"]
    return body


async def test_reconnect_resumes_one_session_without_gap_or_duplicate(
    quick: RunningCollector,
) -> None:
    async with quick.http.ws_connect(url(quick, False), protocols=("3.1_STANDARD",)) as ws:
        assert await read_sn(ws) == {"value": 0, "state": "initial"}
        for seq in range(1, 121):
            await ws.send_str(entry(seq))
        # Acknowledged only once durable: every 50 entries here.
        assert await read_sn(ws) == {"value": 50, "state": "ack"}
        assert await read_sn(ws) == {"value": 100, "state": "ack"}
        await ws.close(code=4000)  # not 3001/3002: the client will come back

    (session,) = quick.manager.sessions.values()
    await wait_until(lambda: session.state.value == "detached", what="detach")
    record = await quick.wait_for_record(lambda r: r["state"] == "detached")

    async with quick.http.ws_connect(url(quick, True), protocols=("3.1_STANDARD",)) as ws:
        assert await read_sn(ws) == {"value": 120, "state": "initial"}
        for seq in range(101, 201):  # the client replays what it still holds
            await ws.send_str(entry(seq))
        await ws.close(code=3001)

    stored = await quick.wait_for_record(lambda r: r["state"] == "stored")
    assert stored["id"] == record["id"]
    assert stored["connections"] == 2
    assert stored["dropped_messages"] == 20
    assert stored["end_reason"] == "conference_left"
    assert stored["last_seq"] == 200
    page = await quick.get_json("/v1/sessions")
    assert len(page["sessions"]) == 1
    lines = (await quick.dump_text(stored["id"])).splitlines()[2:-1]
    assert [json.loads(line)[4] for line in lines] == list(range(1, 201))


async def test_reconnect_claiming_unknown_session_starts_fresh(quick: RunningCollector) -> None:
    async with quick.http.ws_connect(url(quick, True), protocols=("3.1_STANDARD",)) as ws:
        assert await read_sn(ws) == {"value": 0, "state": "initial"}


async def test_resume_grace_expiry_finishes_the_session(tmp_path: Path) -> None:
    settings = {"ingest": {"resume_grace_s": 0.3}, "dumps": {"flush_interval_s": 0.2}}
    async with run_collector(tmp_path / "data", settings) as collector:
        async with collector.http.ws_connect(
            url(collector, False), protocols=("3.1_STANDARD",)
        ) as ws:
            await read_sn(ws)
            await ws.send_str(entry(1))
            await ws.close(code=1001)
        record = await collector.wait_for_record(lambda r: r["state"] == "stored")
        assert record["end_reason"] == "resume_expired" and record["close_code"] == 1001


async def test_silent_connection_is_finished_after_idle_timeout(quick: RunningCollector) -> None:
    async with quick.http.ws_connect(quick.ws_url + "/idle", protocols=("2.0",)) as ws:
        await ws.send_str('["create","PC_0",{},1]')
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1000
    record = await quick.wait_for_record(lambda r: r["state"] == "stored")
    assert record["end_reason"] == "idle_timeout"


async def test_frames_are_flushed_while_streaming(quick: RunningCollector) -> None:
    async with quick.http.ws_connect(quick.ws_url + "/flush", protocols=("2.0",)) as ws:
        await ws.send_str('["create","PC_0",{},1]')
        (session,) = quick.manager.sessions.values()
        live = session.writer.path
        await wait_until(lambda: live.exists() and live.stat().st_size > 0, what="a frame")
        await ws.close()


async def test_shutdown_drains_live_sessions(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:  # outlives the collector's own client
        async with run_collector(tmp_path / "data") as collector:
            ws = await http.ws_connect(collector.ws_url + "/drain", protocols=("2.0",))
            await ws.send_str('["create","PC_0",{},1]')
            await wait_until(lambda: len(collector.manager.sessions) == 1, what="session")
            manager = collector.manager
            closing = asyncio.create_task(ws.receive())
        # the collector stopped: the session was finished and stored, the client told 1001
        msg = await closing
        assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1001
    assert manager.sessions == {}
    async with run_collector(tmp_path / "data") as again:
        record = await again.wait_for_record(lambda r: r["url"] == "/drain")
        assert record["state"] == "stored" and record["end_reason"] == "shutdown"


async def test_resumed_session_record_is_streaming_again(quick: RunningCollector) -> None:
    async with quick.http.ws_connect(url(quick, False), protocols=("3.1_STANDARD",)) as ws:
        await read_sn(ws)
        await ws.send_str(entry(1))
        await ws.close(code=4000)
    await quick.wait_for_record(lambda r: r["state"] == "detached")
    async with quick.http.ws_connect(url(quick, True), protocols=("3.1_STANDARD",)) as ws:
        assert await read_sn(ws) == {"value": 1, "state": "initial"}
        page = await quick.get_json("/v1/sessions?state=streaming")
        assert [r["client_session_id"] for r in page["sessions"]] == [SID]
        await ws.close(code=3001)


async def test_close_line_follows_the_dialects_time_convention(quick: RunningCollector) -> None:
    """rtcstats-js dumps count time from the previous event: so does the close line the
    session writes; the other dialects write epoch ms."""
    for protocol, first in (
        ("rtcstats#5.0", '[39,null,{"x":1},1795483241574]'),
        ("2.0", '["create","PC_0",{},1795483241574]'),
    ):
        async with quick.http.ws_connect(quick.ws_url + "/t", protocols=(protocol,)) as ws:
            await ws.send_str(first)
            await ws.close(code=1000)
        record = await quick.wait_for_record(
            lambda r, p=protocol: r["dialect"] == p and r["state"] == "stored"
        )
        close = json.loads((await quick.dump_text(record["id"])).splitlines()[-1])
        assert close[:3] == ["close", None, 1000]
        if protocol == "2.0":
            assert close[3] > 1_700_000_000_000
        else:
            assert 0 <= close[3] < 5000  # ms since its one event
