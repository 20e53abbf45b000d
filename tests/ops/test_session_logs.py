"""Session start and end lines, as JSON with structured fields, at the configured level."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from rtcstats_server.cli.replay import ReplayOptions, replay_file
from tests.services.collector import wait_until
from tests.services.process import CollectorProcess

FIXTURE = "real/jitsi-google-standard-stats-sfu.jsonl"


async def run_one_session(tmp_path: Path, fixtures: Path, **env: str) -> tuple[str, dict[str, Any]]:
    """A subprocess collector with ``env``, one replayed session; its log and record."""
    server = CollectorProcess(
        tmp_path / "data", env={"RTCSTATS_DUMPS__FLUSH_INTERVAL_S": "0.2", **env}
    )
    server.start()
    try:
        async with aiohttp.ClientSession() as http:
            await server.wait_healthy(http)
            summary, ok = await replay_file(fixtures / FIXTURE, server.ws_url, ReplayOptions())
            assert ok, summary
            records: list[dict[str, Any]] = []

            async def stored() -> bool:
                async with http.get(f"{server.base_url}/v1/sessions?state=stored") as response:
                    records[:] = (await response.json())["sessions"]
                return len(records) == 1

            await wait_until(stored, what="the stored record")
            (record,) = records
        code, _ = await server.terminate()
        assert code == 0
    finally:
        server.kill()
    return server.log(), record


async def test_json_logs_carry_session_start_and_end(tmp_path: Path, fixtures_dir: Path) -> None:
    log, record = await run_one_session(
        tmp_path, fixtures_dir, RTCSTATS_LOGGING__FORMAT="json", RTCSTATS_LOGGING__LEVEL="INFO"
    )
    entries = [json.loads(line) for line in log.splitlines()]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    mine = [e for e in entries if e.get("session_id") == record["id"]]
    assert [e["event"] for e in mine] == ["session_start", "session_end"]
    start, end = mine
    assert start["client_session_id"] == record["client_session_id"]
    assert start["dialect"] == "3.1_STANDARD" and start["level"] == "INFO"
    assert record["id"] in start["message"]
    assert end["client_session_id"] == record["client_session_id"]
    assert end["conference_id"] == record["conference_id"]
    assert end["end_reason"] == "conference_left" and end["close_code"] == 3001
    for key in ("messages", "bytes_received", "dump_bytes", "dump_raw_bytes", "dump_key"):
        assert end[key] == record[key], key
    assert end["messages"] == 84


async def test_level_from_config_hides_session_lines(tmp_path: Path, fixtures_dir: Path) -> None:
    log, record = await run_one_session(tmp_path, fixtures_dir, RTCSTATS_LOGGING__LEVEL="WARNING")
    assert record["id"] not in log  # INFO session lines are below WARNING
    assert "session_start" not in log
