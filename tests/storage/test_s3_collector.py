"""A live collector keeping dumps in S3 (SeaweedFS): real fixtures in, the same bytes out
through the API; a bucket outage across a collector restart; the spool cap."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any

import aiohttp
import obstore
import pytest

from tests.ingest.test_replay_fixtures import CASES, load, replay
from tests.services import streams
from tests.services.collector import RunningCollector, free_port, run_collector, wait_until
from tests.services.seaweedfs import BUCKET, SeaweedFS


def settings_for(s3: SeaweedFS, prefix: str, **storage: Any) -> dict[str, Any]:
    return {"storage": s3.storage_settings(prefix, **storage)}


async def metric(collector: RunningCollector, line_start: str) -> float:
    async with collector.http.get(collector.base_url + "/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def stored_records(collector: RunningCollector) -> list[dict[str, Any]]:
    page = await collector.get_json("/v1/sessions?limit=1000&state=stored")
    records: list[dict[str, Any]] = page["sessions"]
    return records


async def object_bytes(s3: SeaweedFS, key: str) -> bytes:
    return bytes(await (await obstore.get_async(s3.client(), key)).bytes_async())


def files_in(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.is_file()] if directory.exists() else []


@pytest.mark.parametrize(("kind", "name"), CASES, ids=[name for _, name in CASES])
async def test_fixture_round_trip_through_the_bucket(
    s3: SeaweedFS, data_dir: Path, prefix: str, fixtures_dir: Path, kind: str, name: str
) -> None:
    stream = load(fixtures_dir, kind, name)
    async with run_collector(data_dir, settings_for(s3, prefix)) as collector:
        await replay(collector, stream)
        record = await collector.wait_for_record(lambda r: r.get("dump_upload_state") == "uploaded")
        key = record["dump_key"]
        assert re.fullmatch(rf"{prefix}/\d{{4}}/\d\d/\d\d/{record['id']}\.rtcstats\.zst", key)
        assert record["dump_location"] == f"s3://{BUCKET}/{key}"
        stored = await object_bytes(s3, key)
        assert record["dump_bytes"] == len(stored)
        assert record["dump_sha256"] == hashlib.sha256(stored).hexdigest()
        assert files_in(collector.config.outbox_dir) == []
        assert files_in(collector.config.live_dir) == []

        dump = (await collector.dump_text(record["id"])).splitlines()  # from the bucket
        events = dump[2:-1]
        assert len(events) == len(stream.expected_lines)
        assert all(
            streams.line_matches(got, want)
            for got, want in zip(events, stream.expected_lines, strict=True)
        )
        url = f"{collector.base_url}/v1/sessions/{record['id']}/dump?format=zstd"
        async with collector.http.get(url) as response:
            assert await response.read() == stored


async def test_bucket_outage_across_a_collector_restart(
    s3: SeaweedFS, data_dir: Path, prefix: str, fixtures_dir: Path
) -> None:
    """Stop S3, finish 10 sessions, restart the collector, start S3: each dump is
    uploaded exactly once, the spool empties, every record has key, size, checksum."""
    stream = streams.rtcstats_dump(fixtures_dir)
    settings = settings_for(s3, prefix, retry_initial_s=0.1, retry_max_s=0.5)
    await asyncio.to_thread(s3.kill)
    try:
        async with run_collector(data_dir, settings) as first:
            for _ in range(10):
                await replay(first, stream)
            await wait_until(lambda: _outbox_count(first) == 10, what="10 dumps in the outbox")

            async def all_recorded() -> bool:
                # A dump reaches the outbox before its record is written.
                return len(await stored_records(first)) == 10

            await wait_until(all_recorded, what="10 stored records")
            records = await stored_records(first)
            assert {r["dump_upload_state"] for r in records} == {"pending"}
            assert {r["dump_location"] for r in records} == {"outbox"}
            assert all(r["dump_sha256"] and r["dump_bytes"] for r in records)
            # A pending dump is served from the outbox.
            pending_dump = (await first.dump_text(records[0]["id"])).splitlines()
            assert pending_dump[2:-1] == stream.expected_lines

            async with first.http.get(first.base_url + "/readyz") as response:
                ready = await response.json()
            assert (response.status, ready["status"]) == (200, "degraded")  # still ingesting
            assert "storage" in ready["problems"]
            assert ready["upload_backlog"]["files"] == 10
            assert await metric(first, "rtcstats_upload_backlog_files") == 10
            backlog_bytes = await metric(first, "rtcstats_upload_backlog_bytes")
            assert backlog_bytes == sum(r["dump_bytes"] for r in records)
            await wait_until(lambda: _failed_uploads(first), what="an upload attempt to fail")
            assert await metric(first, 'rtcstats_uploads_total{outcome="uploaded"}') == 0
        assert len(files_in(data_dir / "outbox")) == 20  # 10 dumps + 10 sidecars

        async with run_collector(data_dir, settings) as second:
            await asyncio.to_thread(s3.start)
            await wait_until(lambda: _outbox_count(second) == 0, timeout=30, what="drain")
            records = await stored_records(second)
            assert len(records) == 10
            uploaded = await metric(second, 'rtcstats_uploads_total{outcome="uploaded"}')
            assert uploaded == 10
            for record in records:
                assert record["dump_upload_state"] == "uploaded"
                stored = await object_bytes(s3, record["dump_key"])
                assert record["dump_bytes"] == len(stored)
                assert record["dump_sha256"] == hashlib.sha256(stored).hexdigest()
            assert await metric(second, "rtcstats_upload_backlog_files") == 0
            async with second.http.get(second.base_url + "/readyz") as response:
                assert (response.status, (await response.json())["status"]) == (200, "ready")
        listed = await obstore.list(s3.client(), prefix=prefix).collect_async()
        assert len(listed) == 10
        assert files_in(data_dir / "outbox") == []
        assert files_in(data_dir / "live") == []
    finally:
        if not s3.running:
            s3.process = None
            await asyncio.to_thread(s3.start)


def _outbox_count(collector: RunningCollector) -> int:
    return len(list((collector.config.outbox_dir).glob("*.json")))


async def _failed_uploads(collector: RunningCollector) -> bool:
    return await metric(collector, 'rtcstats_uploads_total{outcome="error"}') > 0


async def test_new_connections_get_503_when_the_spool_is_full(
    s3: SeaweedFS, data_dir: Path, prefix: str, fixtures_dir: Path
) -> None:
    stream = streams.rtcstats_dump(fixtures_dir)
    unreachable = f"http://127.0.0.1:{free_port()}"
    settings = settings_for(s3, prefix, endpoint=unreachable, spool_max_bytes=500)
    async with run_collector(data_dir, settings) as collector:
        await replay(collector, stream)  # admitted: the spool was empty
        await wait_until(lambda: _outbox_count(collector) == 1, what="a dump in the outbox")
        records = await stored_records(collector)
        assert records[0]["dump_bytes"] > 500

        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await collector.http.ws_connect(
                collector.ws_url + stream.path, protocols=(stream.subprotocol,)
            )
        assert refused.value.status == 503
        refusals = 'rtcstats_connections_refused_total{reason="spool_full"}'
        assert await metric(collector, refusals) == 1
        assert await metric(collector, "rtcstats_spool_bytes") > 500
        async with collector.http.get(collector.base_url + "/readyz") as response:
            ready = await response.json()
        assert (response.status, ready["status"]) == (503, "unavailable")
        assert "spool" in ready["problems"]
        assert ready["spool"]["max_bytes"] == 500
