"""SIGTERM with 50 live sessions: every client gets 1001, every session is stored
complete, the process exits 0 within ``shutdown_grace_s``; a restart finds 50 dumps
that end with a 1001 close line and 50 records ended by ``shutdown``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from tests.services import streams
from tests.services.collector import wait_until
from tests.services.process import CollectorProcess

SESSIONS = 50
GRACE_S = 10.0
FIXTURE = "jitsi-google-standard-stats-sfu.jsonl"


async def client(
    http: aiohttp.ClientSession, url: str, index: int, fixtures: Path, sent: list[int]
) -> int:
    """Streams the fixture: half at once, the rest slowly until the server closes."""
    stream = streams.jitsi_disk_dump(fixtures, FIXTURE, session_id=f"drain-{index}")
    async with http.ws_connect(url + stream.path, protocols=(stream.subprotocol,)) as ws:
        hello = await ws.receive_json(timeout=10)
        assert hello["body"] == {"value": 0, "state": "initial"}
        half = len(stream.messages) // 2
        for message in stream.messages[:half]:
            await ws.send_str(message)
        sent[index] = half
        for message in stream.messages[half:]:
            if ws.closed:
                break
            try:
                await ws.send_str(message)
            except ConnectionError:
                break
            sent[index] += 1
            # a live client trickles; this is the stream's pace, not a wait for a result
            await asyncio.sleep(0.1)
        while (await ws.receive(timeout=GRACE_S)).type not in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSING,
        ):
            pass
        return ws.close_code or 0


async def test_sigterm_drains_fifty_live_sessions(tmp_path: Path, fixtures_dir: Path) -> None:
    server = CollectorProcess(
        tmp_path / "data", env={"RTCSTATS_SERVER__SHUTDOWN_GRACE_S": str(GRACE_S)}
    )
    server.start()
    expected = streams.jitsi_disk_dump(fixtures_dir, FIXTURE).expected_lines
    try:
        async with aiohttp.ClientSession() as http:
            await server.wait_healthy(http)
            sent = [0] * SESSIONS
            clients = [
                asyncio.create_task(client(http, server.ws_url, i, fixtures_dir, sent))
                for i in range(SESSIONS)
            ]

            async def all_live() -> bool:
                url = f"{server.base_url}/v1/sessions?state=streaming&limit=1000"
                async with http.get(url) as response:
                    live = len((await response.json())["sessions"])
                return live == SESSIONS and min(sent) >= len(expected) // 2

            await wait_until(all_live, 30, what="50 live sessions")
            assert max(sent) < len(expected)  # all still streaming when the signal comes
            code, drain_s = await server.terminate(timeout=GRACE_S + 5)
            print(f"\ndrain of {SESSIONS} live sessions: exit {code} in {drain_s:.2f} s")
            assert code == 0, server.log()
            assert drain_s < GRACE_S
            close_codes = await asyncio.gather(*clients)
        assert close_codes == [1001] * SESSIONS
        assert not list((tmp_path / "data" / "live").glob("*.zst"))  # nothing left live

        server.start()  # a restart must find everything stored, nothing to recover
        async with aiohttp.ClientSession() as http:
            await server.wait_healthy(http)
            async with http.get(f"{server.base_url}/v1/sessions?limit=1000") as response:
                records = (await response.json())["sessions"]
            assert len(records) == SESSIONS
            assert {r["end_reason"] for r in records} == {"shutdown"}
            assert {r["close_code"] for r in records} == {1001}
            assert {r["state"] for r in records} == {"stored"}
            by_client = {r["client_session_id"]: r for r in records}
            assert sorted(by_client) == sorted(f"drain-{i}" for i in range(SESSIONS))
            for index in range(SESSIONS):
                record = by_client[f"drain-{index}"]
                url = f"{server.base_url}/v1/sessions/{record['id']}/dump"
                async with http.get(url) as response:
                    assert response.status == 200
                    dump = (await response.text()).splitlines()
                assert dump[0] == "RTCStatsDump"
                assert json.loads(dump[-1])[:3] == ["close", None, 1001]
                events = dump[2:-1]
                # complete: every message the client got through, in order, no gap
                assert record["messages"] == sent[index] == len(events)
                assert all(
                    streams.line_matches(got, want)
                    for got, want in zip(events, expected, strict=False)
                )
        assert (await server.terminate())[0] == 0
    finally:
        server.kill()
