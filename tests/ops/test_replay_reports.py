"""What ``rtcstats-server replay`` tells an operator: the collector's id and the client's
id of every session it made, the dump's own duration, and the dump's browser kept;
a collector it cannot reach is one sentence naming the URL.

Both sides are real processes: the collector started as ``serve``, the replay as the
command an operator types.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.services.cli import run_cli
from tests.services.collector import free_port, wait_until
from tests.services.process import CollectorProcess

JITSI_DISK = "real/jitsi-google-standard-stats-sfu.jsonl"
RTCSTATS_JS = "captured/rtcstats-js-2.4.0-loopback-call"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[CollectorProcess]:
    collector = CollectorProcess(tmp_path / "data", env={"RTCSTATS_DUMPS__FLUSH_INTERVAL_S": "0.2"})
    collector.start()
    try:
        async with aiohttp.ClientSession() as http:
            await collector.wait_healthy(http)
        yield collector
    finally:
        collector.kill()


async def stored_record(base_url: str, session_id: str) -> dict[str, Any]:
    """The record once stored with its quality summary (the browser comes from it)."""
    found: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:

        async def ready() -> bool:
            async with http.get(f"{base_url}/v1/sessions/{session_id}") as response:
                assert response.status in (200, 404), await response.text()
                if response.status == 200:
                    found.update(await response.json())
            return found.get("state") == "stored" and found.get("browser") is not None

        await wait_until(ready, what=f"session {session_id} stored with its summary")
    return found


def disk_dump_facts(path: Path) -> tuple[str, float]:
    """The user agent and event span of a jitsi on-disk dump, read straight off its lines:
    ``["connectionInfo", null, {..., "userAgent"}, ts]`` then ``[method, pc, value, ts]``."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    stamps = [entry[3] for entry in lines[1:]]
    return lines[0][2]["userAgent"], round((max(stamps) - min(stamps)) / 1000, 3)


async def test_every_session_is_named_with_its_browser_and_real_duration(
    server: CollectorProcess, fixtures_dir: Path
) -> None:
    dump = fixtures_dir / JITSI_DISK
    agent, duration = disk_dump_facts(dump)
    ran = await run_cli("replay", str(dump), server.ws_url, "--connections", "3")
    assert ran.code == 0, ran.err
    summary = json.loads(ran.out)
    assert summary["dump_duration_s"] == duration == 77.001  # the call, not the replay
    assert summary["elapsed_s"] < duration
    assert summary["user_agent"] == agent
    sessions = summary["sessions"]
    assert len(sessions) == 3 and len({s["session_id"] for s in sessions}) == 3
    assert len({s["client_session_id"] for s in sessions}) == 3
    for session in sessions:
        record = await stored_record(server.base_url, session["session_id"])
        assert record["client_session_id"] == session["client_session_id"]
        assert record["user_agent"] == agent
        assert (record["browser"], record["os"]) == ("Chrome", "Windows")
        assert record["end_reason"] == "conference_left" and session["close_code"] == 3001


async def test_a_captured_stream_keeps_the_browser_it_was_captured_from(
    server: CollectorProcess, fixtures_dir: Path
) -> None:
    stream = fixtures_dir / f"{RTCSTATS_JS}.ws.jsonl"
    agent = json.loads((fixtures_dir / f"{RTCSTATS_JS}.meta.json").read_text())["headers"][
        "user-agent"
    ]
    ran = await run_cli("replay", str(stream), server.ws_url)
    assert ran.code == 0, ran.err
    summary = json.loads(ran.out)
    (session,) = summary["sessions"]
    assert session["client_session_id"] is None  # rtcstats-js sends no session id
    assert summary["dump_duration_s"] is not None and summary["dump_duration_s"] > 0
    record = await stored_record(server.base_url, session["session_id"])
    assert record["user_agent"] == agent == summary["user_agent"]
    assert "HeadlessChrome" in agent and record["browser"] is not None


async def test_an_unreachable_collector_is_one_sentence(fixtures_dir: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}/room"  # nothing listens there
    ran = await run_cli("replay", str(fixtures_dir / JITSI_DISK), url, "--connections", "2")
    assert ran.code == 1
    assert ran.out == ""
    assert ran.err_lines == [f"rtcstats-server: cannot connect to {url}: connection refused"]
