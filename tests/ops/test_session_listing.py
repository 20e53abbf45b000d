"""``GET /v1/sessions`` lists records with a compact quality summary unless
``?fields=full``; ``GET /v1/sessions/{id}`` stays complete. Against a collector
process holding real sessions (replayed fixtures, each with its quality summary)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from rtcstats_server.analysis.compact import KEPT
from rtcstats_server.cli.replay import ReplayOptions, replay_file
from tests.services.collector import wait_until
from tests.services.process import CollectorProcess

FIXTURES = [
    "real/jitsi-chrome-standard-pc-failed.jsonl",
    "real/jitsi-google-standard-stats-sfu.jsonl",
    "real/jitsi-safari-standard-stats.jsonl",
    "real/jitsi-firefox97-standard-stats-sfu.jsonl",
    "captured/rtcstats-js-2.4.0-loopback-call.ws.jsonl",
]


@pytest.fixture
async def server(tmp_path: Path, fixtures_dir: Path) -> AsyncIterator[CollectorProcess]:
    collector = CollectorProcess(tmp_path / "data", env={"RTCSTATS_DUMPS__FLUSH_INTERVAL_S": "0.2"})
    collector.start()
    try:
        async with aiohttp.ClientSession() as http:
            await collector.wait_healthy(http)
            for name in FIXTURES:
                summary, ok = await replay_file(
                    fixtures_dir / name, collector.ws_url, ReplayOptions()
                )
                assert ok, summary

            async def summarized() -> bool:
                page = await get(http, collector, "/v1/sessions?state=stored&fields=full")
                done = [r for r in page["sessions"] if r["quality"] is not None]
                return len(done) == len(FIXTURES)

            await wait_until(summarized, what="every session stored with its summary")
        yield collector
    finally:
        collector.kill()


async def get(http: aiohttp.ClientSession, server: CollectorProcess, path: str) -> Any:
    async with http.get(server.base_url + path) as response:
        assert response.status == 200, await response.text()
        return orjson.loads(await response.read())


async def test_list_items_carry_the_compact_summary(server: CollectorProcess) -> None:
    async with aiohttp.ClientSession() as http:
        compact = await get(http, server, "/v1/sessions")
        full = await get(http, server, "/v1/sessions?fields=full")
        assert [r["id"] for r in compact["sessions"]] == [r["id"] for r in full["sessions"]]
        for item, whole in zip(compact["sessions"], full["sessions"], strict=True):
            record = await get(http, server, f"/v1/sessions/{item['id']}")
            assert whole == record  # fields=full lists what the single record gives
            assert "peer_connections" in record["quality"]  # which stays complete
            short, long = item["quality"], record["quality"]
            assert short["compact"] is True and "peer_connections" not in short
            # what a list is read for, with the same values as in the whole summary
            assert {"max_loss_pct", "max_rtt_ms", "pc_count", "dump"} <= set(KEPT)
            assert {key: short[key] for key in KEPT} == {key: long[key] for key in KEPT}
            pcs = long["peer_connections"]
            assert short["connected_pc_count"] == sum(pc["connected"] for pc in pcs)
            assert short["failed_pc_count"] == sum(
                pc["ice_failed"] or pc["connection_failed"] for pc in pcs
            )
            assert short["dropped_pc_count"] == sum(pc["dropped"] for pc in pcs)
            assert short["media_failure_count"] == len(long["media_failures"])
            assert short["findings"] == [
                {"name": f["name"], "severity": f["severity"], "pc_id": f["pc_id"]}
                for f in long["findings"]
            ]
            # the rest of the record is listed as it is, but for its features (up to
            # 256 KiB: they have their own routes)
            assert "features" not in item and record["features"]["connections"] is not None
            rest = {k: v for k, v in item.items() if k != "quality"}
            assert rest == {k: v for k, v in record.items() if k not in ("quality", "features")}
        failed = next(r for r in compact["sessions"] if "connection_failed" in r["findings"])
        assert failed["quality"]["failed_pc_count"] > 0
        # the quality blocks are what made a page heavy (57 KB for 13 sessions)
        short_bytes = sum(len(orjson.dumps(r["quality"])) for r in compact["sessions"])
        long_bytes = sum(len(orjson.dumps(r["quality"])) for r in full["sessions"])
        assert short_bytes * 3 < long_bytes, (short_bytes, long_bytes)


async def test_fields_with_filters_and_pages(server: CollectorProcess) -> None:
    async with aiohttp.ClientSession() as http:
        page = await get(http, server, "/v1/sessions?limit=2&fields=full")
        assert len(page["sessions"]) == 2 and page["next_cursor"]
        assert all("peer_connections" in r["quality"] for r in page["sessions"])
        rest = await get(http, server, f"/v1/sessions?limit=10&cursor={page['next_cursor']}")
        assert len(rest["sessions"]) == len(FIXTURES) - 2
        assert all(r["quality"]["compact"] for r in rest["sessions"])
        found = await get(http, server, "/v1/sessions?finding=connection_failed")
        assert len(found["sessions"]) == 1 and found["sessions"][0]["quality"]["compact"]
        async with http.get(server.base_url + "/v1/sessions?fields=everything") as response:
            assert response.status == 400
            assert (await response.json())["error"] == "bad_filter"
