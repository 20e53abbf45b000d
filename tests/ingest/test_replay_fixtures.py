"""Every real fixture, replayed over a websocket into a running collector."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from tests.services import streams
from tests.services.collector import RunningCollector

CAPTURED = [
    "jitsi-rtcstats-9.7.1-loopback-call",
    "rtcstats-5.2.0-loopback-call",
    "rtcstats-js-2.4.0-loopback-call",
]


def load(fixtures: Path, kind: str, name: str) -> streams.Stream:
    if kind == "captured":
        return streams.captured(fixtures, name)
    if kind == "jitsi":
        return streams.jitsi_disk_dump(fixtures, name)
    if kind == "jvb":
        return streams.jvb_pusher(fixtures)
    return streams.rtcstats_dump(fixtures)


async def replay(collector: RunningCollector, stream: streams.Stream) -> None:
    async with collector.http.ws_connect(
        collector.ws_url + stream.path, protocols=(stream.subprotocol,)
    ) as ws:
        assert ws.protocol == stream.subprotocol
        if stream.subprotocol.startswith("3.1_") and not stream.subprotocol.endswith("JVB"):
            hello = await ws.receive_json(timeout=5)
            assert hello == {"type": "sn", "body": {"value": 0, "state": "initial"}}
        for message in stream.messages:
            await ws.send_str(message)
        await ws.close(code=stream.close_code)


CASES = (
    [("captured", name) for name in CAPTURED]
    + [("jitsi", name) for name in streams.JITSI_DUMPS]
    + [("jvb", "jitsi-jvb-sample.jsonl"), ("rtcstats", "rtcstats-gumonly")]
)


@pytest.mark.parametrize(("kind", "name"), CASES, ids=[name for _, name in CASES])
async def test_fixture_replay_is_stored_losslessly(
    collector: RunningCollector, fixtures_dir: Path, kind: str, name: str
) -> None:
    stream = load(fixtures_dir, kind, name)
    await replay(collector, stream)
    record = await collector.wait_for_record(lambda r: r["state"] == "stored")

    dump = (await collector.dump_text(record["id"])).splitlines()
    assert dump[0] == "RTCStatsDump"
    meta = json.loads(dump[1])
    assert meta["clientProtocol"] == stream.subprotocol
    assert meta["url"] == stream.path
    events = dump[2:-1]
    assert len(events) == len(stream.expected_lines)
    mismatched = [
        i
        for i, (got, want) in enumerate(zip(events, stream.expected_lines, strict=True))
        if not streams.line_matches(got, want)
    ]
    assert mismatched == []  # byte for byte, in order
    close = json.loads(dump[-1])
    assert close[:3] == ["close", None, stream.close_code]

    assert record["dialect"] == stream.subprotocol
    assert record["url"] == stream.path
    assert record["messages"] == len(stream.messages)
    assert record["bytes_received"] == sum(len(m.encode()) for m in stream.messages)
    assert record["close_code"] == stream.close_code
    assert record["end_reason"] == (
        "conference_left" if stream.close_code == 3001 else "client_closed"
    )
    assert record["dump_raw_bytes"] == sum(len(line.encode()) + 1 for line in dump)
    assert 0 < record["dump_bytes"] < record["dump_raw_bytes"]
    if stream.identity.get("confName"):
        assert record["conference_id"] == stream.identity["confName"]
    if stream.identity.get("displayName"):
        assert record["user_id"] == stream.identity["displayName"]

    compressed = collector.base_url + f"/v1/sessions/{record['id']}/dump?format=zstd"
    async with collector.http.get(compressed) as response:
        assert response.headers["Content-Type"] == "application/zstd"
        assert len(await response.read()) == record["dump_bytes"]


async def test_unknown_subprotocol_is_refused_before_upgrade(collector: RunningCollector) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await collector.http.ws_connect(collector.ws_url + "/room", protocols=("bogus",))
    assert refused.value.status == 400
    metrics = await (await collector.http.get(collector.base_url + "/metrics")).text()
    assert 'rtcstats_connections_refused_total{reason="unknown_subprotocol"} 1.0' in metrics
