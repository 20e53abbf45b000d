"""``rtcstats-server replay`` against a started collector, for every fixture dialect.

Each replay must leave records whose message counts equal what the tool sent, with
the event lines of the source dump byte for byte (checked through a dump of ours).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from rtcstats_server.cli.replay import ReplayError, ReplayOptions, load_script, replay_file
from tests.services import streams
from tests.services.collector import RunningCollector, run_collector

#: (file under fixtures/, dialect the tool must pick, messages of one connection)
CASES = [
    ("captured/jitsi-rtcstats-9.7.1-loopback-call.ws.jsonl", "3.1_STANDARD", 116),
    ("captured/rtcstats-js-2.4.0-loopback-call.ws.jsonl", "rtcstats#5.0", 97),
    ("captured/rtcstats-5.2.0-loopback-call.ws.jsonl", "2.0", 63),
    ("real/jitsi-google-standard-stats-sfu.jsonl", "3.1_STANDARD", 84),
    ("real/jitsi-jvb-sample.jsonl", "3.1_JVB", 730),
    ("real/rtcstats-gumonly.rtcstatsdump.jsonl", "rtcstats#4.0", 3),
]


@pytest.fixture
async def fast_collector(tmp_path: Path) -> Any:
    """Acknowledgements (3.1) come with each flush: flush often so replays end fast."""
    async with run_collector(tmp_path / "data", {"dumps": {"flush_interval_s": 0.2}}) as c:
        yield c


async def stored(collector: RunningCollector, count: int) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]]:
        page = await collector.get_json("/v1/sessions?state=stored&limit=1000")
        return page["sessions"]  # type: ignore[no-any-return]

    deadline = asyncio.get_running_loop().time() + 15
    while len(records := await enough()) < count:
        assert asyncio.get_running_loop().time() < deadline, records
        await asyncio.sleep(0.05)
    return records


@pytest.mark.parametrize(("name", "dialect", "messages"), CASES, ids=[c[0] for c in CASES])
async def test_replay_each_dialect(
    fast_collector: RunningCollector, fixtures_dir: Path, name: str, dialect: str, messages: int
) -> None:
    connections = 3
    summary, ok = await replay_file(
        fixtures_dir / name, fast_collector.ws_url, ReplayOptions(connections=connections)
    )
    assert ok, summary
    assert summary["dialect"] == dialect
    assert summary["messages_per_connection"] == messages
    assert summary["accepted"] == connections and summary["refused"] == 0
    assert summary["sent"] == connections * messages
    closing = "3001" if dialect in ("3.1_STANDARD", "3.1_LEGACY") else "1000"
    assert summary["close_codes"] == {closing: connections}
    last_seq = load_script(fixtures_dir / name).last_seq
    if dialect == "3.1_STANDARD" and last_seq:
        # every seq the client numbered was acknowledged as durable before it left
        assert summary["acknowledged"] == connections * last_seq
    else:  # no sn acknowledgements (other dialects, or entries without seq numbers)
        assert summary["acknowledged"] is None
    records = await stored(fast_collector, connections)
    assert len(records) == connections
    assert {r["dialect"] for r in records} == {dialect}
    assert [r["messages"] for r in records] == [messages] * connections
    assert all(r["dropped_messages"] == 0 for r in records)
    if dialect.startswith("3.1_"):
        ids = {r["client_session_id"] for r in records}
        assert len(ids) == connections  # one statsSessionId per connection
    expected_reason = "conference_left" if closing == "3001" else "client_closed"
    assert {r["end_reason"] for r in records} == {expected_reason}


async def test_replaying_our_own_zstd_dump_keeps_every_line(
    fast_collector: RunningCollector, fixtures_dir: Path, tmp_path: Path
) -> None:
    """Jitsi disk dump → our dump (zstd) → replayed again: identical event lines."""
    stream = streams.jitsi_disk_dump(fixtures_dir, "jitsi-safari-standard-stats.jsonl")
    first, ok = await replay_file(
        fixtures_dir / "real" / stream.name, fast_collector.ws_url, ReplayOptions()
    )
    assert ok, first
    (original,) = await stored(fast_collector, 1)
    ours = tmp_path / "ours.rtcstats.zst"
    url = f"{fast_collector.base_url}/v1/sessions/{original['id']}/dump?format=zstd"
    async with fast_collector.http.get(url) as response:
        assert response.status == 200
        ours.write_bytes(await response.read())
    assert ours.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"

    second, ok = await replay_file(ours, fast_collector.base_url, ReplayOptions())
    assert ok, second
    assert second["layout"] == "rtcstats-dump" and second["dialect"] == "3.1_STANDARD"
    records = await stored(fast_collector, 2)
    (copy,) = [r for r in records if r["id"] != original["id"]]
    assert copy["messages"] == original["messages"] == len(stream.messages)
    before = (await fast_collector.dump_text(original["id"])).splitlines()
    after = (await fast_collector.dump_text(copy["id"])).splitlines()
    assert after[2:-1] == before[2:-1]
    # the dump's own path is used when the operator's URL names none
    assert json.loads(after[1])["url"].startswith(json.loads(before[1])["url"].split("?")[0])


async def test_cli_prints_progress_and_a_json_summary(
    fast_collector: RunningCollector, fixtures_dir: Path
) -> None:
    source = fixtures_dir / "captured" / "rtcstats-js-2.4.0-loopback-call.ws.jsonl"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rtcstats_server", "replay", str(source),
        fast_collector.ws_url + "/smoke", "--connections", "2", "--rate", "120",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    summary = json.loads(out)
    assert summary["sent"] == 2 * 97 and summary["close_codes"] == {"1000": 2}
    # 194 messages at 120/s take > 1.5 s: at least one progress line on stderr
    progress = [line for line in err.decode().splitlines() if line.startswith("replay:")]
    assert progress and "sent" in progress[0]
    assert summary["messages_per_s"] <= 130
    records = await stored(fast_collector, 2)
    assert {r["url"] for r in records} == {"/smoke"}


async def test_refusals_are_counted_and_fail_the_run(
    fast_collector: RunningCollector, fixtures_dir: Path
) -> None:
    source = fixtures_dir / "captured" / "rtcstats-5.2.0-loopback-call.ws.jsonl"
    too_long = fast_collector.ws_url + "/" + "a" * 2000  # over ingest.max_path_bytes
    summary, ok = await replay_file(source, too_long, ReplayOptions(connections=2))
    assert not ok
    assert summary["refused"] == 2 and summary["refusals"] == {"400": 2}
    assert summary["accepted"] == 0 and summary["sent"] == 0


def test_exports_without_a_wire_form_are_refused(fixtures_dir: Path) -> None:
    with pytest.raises(ReplayError, match="no websocket form"):
        load_script(fixtures_dir / "real" / "jitsi-clienttest.legacy-import.json")
