"""``GET /v1/sessions/{id}/dump?format=rtcstats``: every dialect as rtcstats fileFormat 3,
read back by our reader with the same events, and with the times the rtcstats tools
compute (the first absolute, every next one a delta: a jitsi dump handed out as it is
would put its events in 2071)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from rtcstats_server.dumps.events import ERROR_METHOD
from rtcstats_server.dumps.jsforms import RENAMES
from rtcstats_server.dumps.reader import DumpReader
from tests.ingest.test_replay_fixtures import load, replay
from tests.services import uploads
from tests.services.collector import RunningCollector, run_collector, wait_until

#: Fixture → the dialect of its events.
FIXTURES = {
    "real/jitsi-google-standard-stats-sfu.jsonl": "3.1_STANDARD",
    "real/jitsi-jvb-sample.jsonl": "3.1_JVB",
    "real/rtcstats-gumonly.webrtc-internals.json.gz": "3.1_STANDARD",
    "captured/rtcstats-5.2.0-loopback-call.ws.jsonl": "2.0",
    "captured/rtcstats-js-2.4.0-loopback-call.ws.jsonl": "rtcstats#5.0",
}
#: 2033-05-18: later than any fixture, earlier than any sum of two epoch times.
LATE_MS = 2e12


@pytest.fixture
async def collector(tmp_path: Path) -> Any:
    async with run_collector(tmp_path / "data") as running:
        yield running


async def download(collector: RunningCollector, session_id: str, fmt: str) -> bytes:
    url = f"{collector.base_url}/v1/sessions/{session_id}/dump?format={fmt}"
    async with collector.http.get(url) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "application/x-ndjson"
        return await response.read()


def as_the_rtcstats_tools_time(dump: bytes) -> list[float]:
    """Event times as fileFormat 3 readers compute them: each line's last element is
    the time since the previous line (the first one's, since the epoch)."""
    times: list[float] = []
    last = 0.0
    for line in dump.splitlines()[2:]:
        entry = orjson.loads(line)
        last = entry[-1] + last
        if entry[0] not in ("create", 39) or entry[1] is not None:  # as ``outline``
            times.append(last)
    return times


def outline(dump: bytes) -> list[tuple[float, str, str | None, int]]:
    """The events, less damage markers and the page-level ``create`` a conversion adds
    (dumps/jsforms.py), their methods under rtcstats-js's names."""
    return [
        (e.timestamp, RENAMES.get(e.method, e.method), e.pc_id, len(e.stats))
        for e in DumpReader([dump])
        if e.method != ERROR_METHOD and not (e.method == "create" and e.pc_id is None)
    ]


@pytest.mark.parametrize("name", FIXTURES)
async def test_every_dialect_downloads_as_file_format_3(
    collector: RunningCollector, fixtures_dir: Path, name: str
) -> None:
    status, answer = await uploads.post_raw(
        collector.http, collector.base_url, (fixtures_dir / name).read_bytes()
    )
    assert status == 200, answer
    session_id = answer["rtcstatsId"]
    record = await collector.get_json(f"/v1/sessions/{session_id}")
    assert record["client_protocol"] == FIXTURES[name]
    stored = await download(collector, session_id, "jsonl")
    converted = await download(collector, session_id, "rtcstats")
    downloads = collector.config.server.data_dir / "downloads"
    await wait_until(lambda: not any(downloads.iterdir()), 5, "the conversion deleted once sent")

    reader = DumpReader([converted], strict=True)
    assert converted.startswith(b"RTCStatsDump\n")
    assert reader.info.metadata["fileFormat"] == 3 and reader.info.scheme == "rtcstats-js"
    expected = outline(stored)
    assert expected and outline(converted) == expected
    times = as_the_rtcstats_tools_time(converted)
    assert times == [when for when, *_ in expected] and max(times) < LATE_MS
    if FIXTURES[name].startswith("rtcstats#"):
        assert converted == stored  # already fileFormat 3: sent as stored
    else:
        assert "clientProtocol" not in reader.info.metadata
        assert reader.info.metadata["convertedFrom"] == FIXTURES[name]
    if FIXTURES[name] == "3.1_STANDARD":
        # The reason for the format: the stored jitsi lines read the same way land late.
        assert max(as_the_rtcstats_tools_time(stored)) > LATE_MS


async def test_unknown_formats_are_refused(collector: RunningCollector, fixtures_dir: Path) -> None:
    body = (fixtures_dir / "real/jitsi-safari-standard-stats.jsonl").read_bytes()
    _, answer = await uploads.post_raw(collector.http, collector.base_url, body)
    url = f"{collector.base_url}/v1/sessions/{answer['rtcstatsId']}/dump?format=csv"
    async with collector.http.get(url) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "bad_filter"


#: Live sessions of every dialect the websocket takes: (fixture kind, name, protocol).
LIVE = [
    ("captured", "rtcstats-js-2.4.0-loopback-call", "rtcstats#5.0"),
    ("rtcstats", "rtcstats-gumonly", "rtcstats#4.0"),
    ("captured", "jitsi-rtcstats-9.7.1-loopback-call", "3.1_STANDARD"),
    ("jitsi", "jitsi-safari-standard-stats.jsonl", "3.1_LEGACY"),
    ("captured", "rtcstats-5.2.0-loopback-call", "2.0"),
    ("jvb", "jitsi-jvb-sample.jsonl", "3.1_JVB"),
]


@pytest.mark.parametrize(("kind", "name", "protocol"), LIVE, ids=[p for *_, p in LIVE])
async def test_live_sessions_of_every_dialect_download_as_file_format_3(
    collector: RunningCollector, fixtures_dir: Path, kind: str, name: str, protocol: str
) -> None:
    stream = replace(load(fixtures_dir, kind, name), subprotocol=protocol)
    await replay(collector, stream)
    record = await collector.wait_for_record(lambda r: r["state"] == "stored")
    assert record["dialect"] == protocol
    stored = await download(collector, record["id"], "jsonl")
    converted = await download(collector, record["id"], "rtcstats")
    reader = DumpReader([converted], strict=True)
    assert reader.info.metadata["fileFormat"] == 3 and reader.info.scheme == "rtcstats-js"
    expected = outline(stored)
    assert expected and outline(converted) == expected
    times = as_the_rtcstats_tools_time(converted)
    assert times == [when for when, *_ in expected] and max(times) < LATE_MS
    if protocol.startswith("rtcstats#"):
        assert converted == stored  # ours, already fileFormat 3: sent as stored
    else:
        assert reader.info.metadata["convertedFrom"] == protocol
        assert reader.info.metadata["url"] == stream.path  # the session's metadata kept
