"""Hostile input against a live collector: each gets its defined answer, and an
honest session streaming at the same time arrives intact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from tests.services import streams
from tests.services.collector import RunningCollector, run_collector

LIMITS = {
    "ingest": {"max_message_bytes": 16384, "max_bad_messages": 5, "max_session_bytes": 131072}
}


@pytest.fixture
async def strict(tmp_path: Path) -> AsyncIterator[RunningCollector]:
    async with run_collector(tmp_path / "data", LIMITS) as running:
        yield running


async def metrics_text(collector: RunningCollector) -> str:
    async with collector.http.get(collector.base_url + "/metrics") as response:
        return await response.text()


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return ws.close_code


async def test_each_hostile_input_gets_its_answer_while_an_honest_session_streams(
    strict: RunningCollector, fixtures_dir: Path
) -> None:
    honest = streams.captured(fixtures_dir, "rtcstats-5.2.0-loopback-call")
    half = len(honest.messages) // 2
    async with strict.http.ws_connect(
        strict.ws_url + honest.path, protocols=(honest.subprotocol,)
    ) as good:
        for message in honest.messages[:half]:
            await good.send_str(message)

        # A frame over max_message_bytes: 1009.
        async with strict.http.ws_connect(strict.ws_url + "/a", protocols=("2.0",)) as ws:
            await ws.send_str('["create","PC_0",{},1]')
            await ws.send_str('["x",null,"' + "a" * 20_000 + '",1]')
            assert await closed_with(ws) == 1009
        # A binary frame: 1003.
        async with strict.http.ws_connect(strict.ws_url + "/b", protocols=("2.0",)) as ws:
            await ws.send_str('["create","PC_0",{},1]')
            await ws.send_bytes(b"\x00\x01binary")
            assert await closed_with(ws) == 1003
        # Invalid JSON: dropped and counted, the socket closed with 1007 at the limit.
        async with strict.http.ws_connect(strict.ws_url + "/c", protocols=("2.0",)) as ws:
            await ws.send_str('["create","PC_0",{},1]')
            for _ in range(5):
                await ws.send_str("{not json")
            assert await closed_with(ws) == 1007
        # A session over max_session_bytes: 1009, and stored with that reason.
        async with strict.http.ws_connect(strict.ws_url + "/d", protocols=("2.0",)) as ws:
            for i in range(60):
                if ws.closed:
                    break
                try:
                    await ws.send_str(f'["getstats","PC_0",{{"n":"{"z" * 3000}"}},{i}]')
                except ConnectionError:
                    break
            assert await closed_with(ws) == 1009
        # Ids and paths that could reach storage keys: 400 before the upgrade.
        for path in (
            "/room?statsSessionId=../../etc&isReconnect=false",
            "/room?statsSessionId=" + "x" * 200,
            "/room?statsSessionId=" + "x" * 10_000,  # over ingest.max_path_bytes: bad_path
            "/%2e%2e/..\\evil",
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                raw = URL(strict.ws_url + path, encoded=True)  # no client-side normalising
                await strict.http.ws_connect(raw, protocols=("3.1_STANDARD",))
            assert refused.value.status == 400

        for message in honest.messages[half:]:
            await good.send_str(message)

    record = await strict.wait_for_record(
        lambda r: r["url"] == honest.path and r["state"] == "stored"
    )
    dump = (await strict.dump_text(record["id"])).splitlines()
    assert dump[2:-1] == honest.expected_lines
    assert record["dropped_messages"] == 0

    reasons = {}
    for url in ("/a", "/b", "/c", "/d"):
        stored = await strict.wait_for_record(
            lambda r, url=url: r["url"] == url and r["state"] == "stored"
        )
        reasons[url] = (stored["end_reason"], stored["close_code"])
    assert reasons == {
        "/b": ("binary_frame", 1003),
        "/c": ("bad_messages", 1007),
        "/d": ("session_too_large", 1009),
        "/a": ("message_too_big", 1009),
    }

    text = await metrics_text(strict)
    for line in (
        'rtcstats_messages_dropped_total{reason="message_too_big"} 1.0',
        'rtcstats_messages_dropped_total{reason="binary_frame"} 1.0',
        'rtcstats_messages_dropped_total{reason="invalid_json"} 5.0',
        'rtcstats_messages_dropped_total{reason="session_too_large"} 1.0',
        'rtcstats_connections_refused_total{reason="bad_session_id"} 2.0',
        'rtcstats_connections_refused_total{reason="bad_path"} 2.0',
        'rtcstats_sessions_finished_total{end_reason="bad_messages"} 1.0',
    ):
        assert line in text
    async with strict.http.get(strict.base_url + "/healthz") as response:
        assert response.status == 200


async def test_empty_session_leaves_no_dump_and_no_record(collector: RunningCollector) -> None:
    async with collector.http.ws_connect(collector.ws_url + "/quiet", protocols=("2.0",)) as ws:
        await ws.close()
    page = await collector.get_json("/v1/sessions")
    assert page["sessions"] == []
    assert list(collector.config.live_dir.iterdir()) == []
    assert not collector.config.dumps_dir.exists() or not any(
        collector.config.dumps_dir.rglob("*.zst")
    )


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("?limit=0", 400),
        ("?limit=1001", 400),
        ("?since=yesterday", 400),
        ("?state=exploded", 400),
        ("?colour=red", 400),
        ("?cursor=%%%", 400),
    ],
)
async def test_bad_api_queries_get_json_errors(
    collector: RunningCollector, query: str, status: int
) -> None:
    body = await collector.get_json("/v1/sessions" + query, status=status)
    assert set(body) == {"error", "detail"}


async def test_unknown_session_is_a_json_404(collector: RunningCollector) -> None:
    for path in ("/v1/sessions/" + "0" * 32, "/v1/sessions/../../etc", "/v1/sessions/x/dump"):
        async with collector.http.get(collector.base_url + path) as response:
            assert response.status == 404
            assert (await response.json())["error"] == "not_found"
