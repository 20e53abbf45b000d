"""Assembling chunked uploads under attack and accident (issue 14, items 1 and 5),
against a collector process: 200 racing assemble calls of one fileId make exactly one
session and every caller gets its answer; a collector killed (SIGKILL) in the middle
of an assembly keeps the chunks, cleans ``uploads/work`` when it starts again, and the
retried assemble stores exactly one session."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.services import uploads
from tests.services.collector import wait_until
from tests.services.process import CollectorProcess

RACERS = 200


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # No per-host connection limit: the racers really arrive together.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:
        yield session


async def started(process: CollectorProcess, http: aiohttp.ClientSession) -> CollectorProcess:
    process.start()
    await process.wait_healthy(http)
    return process


async def uploaded_sessions(process: CollectorProcess, http: aiohttp.ClientSession) -> list[str]:
    async with http.get(process.base_url + "/v1/sessions?limit=1000") as response:
        assert response.status == 200
        page = await response.json()
    return [s["id"] for s in page["sessions"] if s["dialect"] == "upload"]


async def test_racing_assembles_make_one_session(
    tmp_path: Path, http: aiohttp.ClientSession, fixtures_dir: Path
) -> None:
    process = await started(CollectorProcess(tmp_path / "data"), http)
    try:
        body = (fixtures_dir / "real" / "jitsi-google-standard-stats-sfu.jsonl").read_bytes()
        base = process.base_url
        status, _, file_id = await uploads.send_chunks(http, base, body, "race.jsonl", 16 * 1024)
        assert status == 200
        answers = await asyncio.gather(
            *(uploads.assemble(http, base, file_id, "race.jsonl") for _ in range(RACERS))
        )
        statuses = sorted({status for status, _ in answers})
        assert statuses == [200], [a for a in answers if a[0] != 200][:3]
        ids = {answer["rtcstatsId"] for _, answer in answers}
        assert len(ids) == 1
        assert await uploaded_sessions(process, http) == list(ids)
        # Later calls (a client retrying after a timeout) get the same answer.
        status, again = await uploads.assemble(http, base, file_id, "race.jsonl")
        assert status == 200 and {again["rtcstatsId"]} == ids
        # Refusals are remembered the same way: every racer gets the same 415.
        status, _, bad_id = await uploads.send_chunks(http, base, b"not a dump\n" * 9, "bad")
        refused = await asyncio.gather(
            *(uploads.assemble(http, base, bad_id, "bad") for _ in range(20))
        )
        assert {(status, answer["errorCode"]) for status, answer in refused} == {
            (415, "parsing_issue")
        }
        assert await uploaded_sessions(process, http) == list(ids)
        assert "Traceback" not in process.log()
    finally:
        process.kill()


def big_dump(fixtures: Path) -> tuple[bytes, int]:
    """~120 MB of real jitsi dump lines (one session's, repeated), gzip: long enough to
    convert that a kill lands in the middle; and how many events it holds."""
    lines = (fixtures / "real" / "jitsi-google-standard-stats-sfu.jsonl").read_bytes()
    first, _, rest = lines.partition(b"\n")
    return gzip.compress(first + b"\n" + rest * 420, 1), len(rest.splitlines()) * 420


async def test_sigkill_during_assemble_keeps_the_chunks(
    tmp_path: Path, http: aiohttp.ClientSession, fixtures_dir: Path
) -> None:
    data = tmp_path / "data"
    work = data / "uploads" / "work"
    chunks = data / "uploads" / "chunks"
    body, events = big_dump(fixtures_dir)
    first = await started(CollectorProcess(data), http)
    try:
        status, _, file_id = await uploads.send_chunks(
            http, first.base_url, body, "big.jsonl.gz", 1 << 20
        )
        assert status == 200
        call = asyncio.ensure_future(
            uploads.assemble(http, first.base_url, file_id, "big.jsonl.gz")
        )

        def converting() -> bool:
            return any(work.glob("*.rtcstats.zst"))

        await wait_until(converting, 30, "the assembly to be converting")
        first.kill()
        with pytest.raises(aiohttp.ClientError):
            await call
    finally:
        first.kill()
    assert any(work.iterdir()), "the killed assembly left its work files"
    parts = [p for d in chunks.iterdir() for p in d.iterdir() if p.name.isdigit()]
    assert len(parts) == -(-len(body) // (1 << 20)), "every chunk is still there"

    second = await started(CollectorProcess(data), http)
    try:
        assert not any(work.iterdir()), "uploads/work is cleaned at start"
        status, answer = await uploads.assemble(http, second.base_url, file_id, "big.jsonl.gz")
        assert status == 200, answer
        assert await uploaded_sessions(second, http) == [answer["rtcstatsId"]]
        record: dict[str, Any] = {}

        async def stored() -> bool:
            async with http.get(f"{second.base_url}/v1/sessions/{answer['rtcstatsId']}") as r:
                record.update(await r.json())
            return record.get("state") == "stored"

        await wait_until(stored, 10, "the record")
        assert record["messages"] == events
        # The chunks went with the answer; it stays for later calls.
        assert not [p for d in chunks.iterdir() for p in d.iterdir() if p.name.isdigit()]
        status, again = await uploads.assemble(http, second.base_url, file_id, "big.jsonl.gz")
        assert (status, again["rtcstatsId"]) == (200, answer["rtcstatsId"])
    finally:
        second.kill()
