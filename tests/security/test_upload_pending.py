"""What waits in the upload area is bounded by ``uploads.max_pending_bytes`` (issue 14,
item 1), against a collector process: empty chunks are not free (thousands of them
fill the area and the rest get 503 ``busy``), and neither are uploads waiting for
their turn (a crowd of raw uploads: the ones that fit are stored, the others are
told ``busy`` at once instead of piling up)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from rtcstats_server.uploads.chunks import CHUNK_COST, UPLOAD_COST
from tests.services import uploads
from tests.services.process import CollectorProcess

PENDING = 4 * UPLOAD_COST  # 4 MiB


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[CollectorProcess, aiohttp.ClientSession]]:
    env = {
        "RTCSTATS_UPLOADS__MAX_PENDING_BYTES": str(PENDING),
        "RTCSTATS_UPLOADS__CONCURRENCY": "1",
    }
    process = CollectorProcess(tmp_path / "data", env=env)
    process.start()
    connector = aiohttp.TCPConnector(limit=64)
    try:
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=120)
        ) as http:
            await process.wait_healthy(http)
            yield process, http
    finally:
        process.kill()


async def test_empty_chunks_fill_the_area(
    server: tuple[CollectorProcess, aiohttp.ClientSession],
) -> None:
    process, http = server
    fields = {"fileId": "empties", "totalChunks": "100000", "fileName": "e"}

    async def empty(index: int) -> int:
        chunk = {**fields, "chunkIndex": str(index)}
        return (await uploads.post_chunk(http, process.base_url, b"", chunk))[0]

    # 4 KiB per chunk and 4 KiB for the file: 1023 fit in 4 MiB.
    statuses = Counter(await asyncio.gather(*(empty(i) for i in range(1200))))
    assert statuses == {200: PENDING // CHUNK_COST - 1, 503: 1200 - PENDING // CHUNK_COST + 1}
    chunks = process.data_dir / "uploads" / "chunks"
    assert sum(1 for d in chunks.iterdir() for _ in d.iterdir()) == statuses[200] + 1
    async with http.get(process.base_url + "/healthz") as response:
        assert response.status == 200


async def test_queued_uploads_are_bounded(
    server: tuple[CollectorProcess, aiohttp.ClientSession], fixtures_dir: Path
) -> None:
    process, http = server
    body = (fixtures_dir / "real" / "jitsi-firefox97-standard-stats-sfu.jsonl").read_bytes()
    answers = await asyncio.gather(
        *(uploads.post_raw(http, process.base_url, body) for _ in range(100))
    )
    statuses = Counter(status for status, _ in answers)
    # Each raw upload counts 1 MiB and its bytes until stored: at most 3 at once here.
    assert set(statuses) == {200, 503} and statuses[200] >= 3, statuses
    assert {a["errorCode"] for s, a in answers if s == 503} == {"busy"}
    async with http.get(process.base_url + "/v1/sessions?limit=1000") as response:
        stored = (await response.json())["sessions"]
    assert len(stored) == statuses[200]
    # Nothing stays counted: once they are done, an upload fits again.
    status, _ = await uploads.post_raw(http, process.base_url, body)
    assert status == 200
    assert "Traceback" not in process.log()
