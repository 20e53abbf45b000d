"""Azure Blob Storage against Azurite: a live collector round trip (a real fixture in, the
same bytes out of the container and through the API), a dump large enough for blocks,
and the account key: enforced, taken from the environment, never shown."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import obstore
import pytest

from rtcstats_server.config import Config, build_config, masked_dump
from rtcstats_server.exceptions import StoreUnavailable
from rtcstats_server.storage.base import dump_key
from rtcstats_server.storage.objects import ObjectDumpStore, open_object_store
from tests.ingest.test_replay_fixtures import load, replay
from tests.services import streams
from tests.services.azurite import ACCOUNT_KEY, CONTAINER, Azurite
from tests.services.collector import run_collector, wait_until

MiB = 1 << 20


def config_for(data_dir: Path, storage: dict[str, Any]) -> Config:
    return build_config({"storage": storage, "server": {"data_dir": str(data_dir)}}, environ={})


async def ping(config: Config) -> None:
    store = ObjectDumpStore(
        open_object_store(config.storage), config.storage, config.outbox_dir, upload=False
    )
    await store.open()
    try:
        await store.ping()
    finally:
        await store.close()


async def blob_bytes(azurite: Azurite, key: str) -> bytes:
    return bytes(await (await obstore.get_async(azurite.client(), key)).bytes_async())


async def test_fixture_round_trip_through_the_container(
    azurite: Azurite, data_dir: Path, prefix: str, fixtures_dir: Path
) -> None:
    stream = load(fixtures_dir, "rtcstats", "rtcstats-gumonly")
    settings = {"storage": azurite.storage_settings(prefix)}
    async with run_collector(data_dir, settings) as collector:
        async with collector.http.get(collector.base_url + "/readyz") as response:
            ready = await response.json()
        assert (response.status, ready["status"]) == (200, "ready")  # the ping's 404 is healthy

        await replay(collector, stream)
        record = await collector.wait_for_record(lambda r: r.get("dump_upload_state") == "uploaded")
        key = record["dump_key"]
        assert re.fullmatch(rf"{prefix}/\d{{4}}/\d\d/\d\d/{record['id']}\.rtcstats\.zst", key)
        assert record["dump_location"] == f"az://{CONTAINER}/{key}"
        stored = await blob_bytes(azurite, key)
        assert record["dump_bytes"] == len(stored)
        assert record["dump_sha256"] == hashlib.sha256(stored).hexdigest()
        assert not any(collector.config.outbox_dir.iterdir())

        dump = (await collector.dump_text(record["id"])).splitlines()  # from the container
        events = dump[2:-1]
        assert len(events) == len(stream.expected_lines)
        assert all(
            streams.line_matches(got, want)
            for got, want in zip(events, stream.expected_lines, strict=True)
        )
        url = f"{collector.base_url}/v1/sessions/{record['id']}/dump?format=zstd"
        async with collector.http.get(url) as response:
            assert await response.read() == stored


async def test_dump_above_the_threshold_goes_up_in_blocks_and_reads_back_in_ranges(
    azurite: Azurite, data_dir: Path, tmp_path: Path, prefix: str
) -> None:
    """12 MiB in 5 MiB blocks (Put Block + Put Block List), read back across two 8 MiB
    ranged GETs pinned to one ETag."""
    storage = azurite.storage_settings(
        prefix, multipart_threshold_bytes=5 * MiB, multipart_part_bytes=5 * MiB
    )
    config = config_for(data_dir, storage)
    store = ObjectDumpStore(open_object_store(config.storage), config.storage, config.outbox_dir)
    await store.open()
    try:
        data = os.urandom(12 * MiB)
        source = tmp_path / "big.zst"
        source.write_bytes(data)
        key = dump_key("cd" * 16, datetime(2024, 5, 17, tzinfo=UTC), prefix)
        await store.put(key, source)
        await store.recorded(key)
        await wait_until(lambda: store.outbox.files == 0, what="upload of the outbox")
        meta = await obstore.head_async(azurite.client(), key)
        assert meta["size"] == len(data)
        blocks = await asyncio.to_thread(azurite.committed_blocks, key)
        assert sum(blocks) == len(data)
        assert len(blocks) >= 3  # sent in parts, not in one PUT
        assert max(blocks) <= 5 * MiB
        read = hashlib.sha256()
        async for chunk in store.read(key):
            read.update(chunk)
        assert read.digest() == hashlib.sha256(data).digest()
    finally:
        await store.close()


async def test_a_wrong_account_key_is_refused_and_never_shown(
    azurite: Azurite, data_dir: Path, prefix: str
) -> None:
    wrong = base64.b64encode(b"not the account key".ljust(64, b"!")).decode()
    config = config_for(data_dir, azurite.storage_settings(prefix, account_key=wrong))
    with pytest.raises(StoreUnavailable, match=f"az://{CONTAINER}"):
        await ping(config)
    shown = repr(masked_dump(config)) + repr(config)
    assert wrong not in shown
    assert masked_dump(config)["storage"]["account_key"] == "********"


async def test_the_account_key_can_come_from_the_environment(
    azurite: Azurite, data_dir: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = azurite.storage_settings(prefix)
    del settings["account_key"]
    config = config_for(data_dir, settings)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", ACCOUNT_KEY)
    await ping(config)
