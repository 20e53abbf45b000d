"""Object storage specifics against SeaweedFS: multipart, the durable outbox, credentials."""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import obstore
import pytest

from rtcstats_server.config import Config, build_config, masked_dump
from rtcstats_server.exceptions import ConfigError, NotFound, StoreUnavailable
from rtcstats_server.storage.base import dump_key
from rtcstats_server.storage.objects import ObjectDumpStore, open_object_store
from tests.services.collector import free_port, wait_until
from tests.services.seaweedfs import SeaweedFS

MiB = 1 << 20


def config_for(data_dir: Path, storage: dict[str, Any]) -> Config:
    return build_config({"storage": storage, "server": {"data_dir": str(data_dir)}}, environ={})


@asynccontextmanager
async def object_store(config: Config, **options: Any) -> AsyncIterator[ObjectDumpStore]:
    store = ObjectDumpStore(
        open_object_store(config.storage), config.storage, config.outbox_dir, **options
    )
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def key_for(prefix: str, n: int) -> str:
    return dump_key(f"{n:032x}", datetime(2024, 5, 17, tzinfo=UTC), prefix)


def dead_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


async def test_50_mib_dump_is_uploaded_in_parts_and_streamed_back(
    s3: SeaweedFS, data_dir: Path, tmp_path: Path, prefix: str
) -> None:
    part = 8 * MiB
    config = config_for(
        data_dir,
        s3.storage_settings(prefix, multipart_threshold_bytes=8 * MiB, multipart_part_bytes=part),
    )
    data = os.urandom(50 * MiB)  # incompressible, like a dump's zstd frames
    source = tmp_path / "big.zst"
    source.write_bytes(data)
    key = key_for(prefix, 1)
    async with object_store(config) as store:
        began = time.monotonic()
        stored = await store.put(key, source)
        await store.recorded(key)
        await wait_until(lambda: store.outbox.files == 0, timeout=120, what="50 MiB upload")
        seconds = time.monotonic() - began
        print(f"\n50 MiB dump: put + upload + verify in {seconds:.2f} s ({50 / seconds:.1f} MiB/s)")
        assert stored.size == len(data)

        meta = await obstore.head_async(s3.client(), key)
        assert meta["size"] == len(data)
        # S3 ETags of multipart uploads are "<md5 of part md5s>-<number of parts>".
        assert (meta["e_tag"] or "").strip('"').endswith(f"-{math.ceil(len(data) / part)}")

        digest = hashlib.sha256()
        largest = 0
        async for chunk in store.read(key):
            digest.update(chunk)
            largest = max(largest, len(chunk))
        assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
        assert largest <= 2 * MiB  # streamed, never the whole object at once


async def test_small_dump_is_one_request(
    s3: SeaweedFS, data_dir: Path, tmp_path: Path, prefix: str
) -> None:
    config = config_for(data_dir, s3.storage_settings(prefix))
    source = tmp_path / "small.zst"
    source.write_bytes(os.urandom(1000))
    async with object_store(config) as store:
        await store.put(key_for(prefix, 2), source)
        await store.recorded(key_for(prefix, 2))
        await wait_until(lambda: store.outbox.files == 0, what="upload")
    meta = await obstore.head_async(s3.client(), key_for(prefix, 2))
    assert "-" not in (meta["e_tag"] or "")


async def test_a_dump_waits_in_the_outbox_until_its_record_is_written(
    s3: SeaweedFS, data_dir: Path, tmp_path: Path, prefix: str
) -> None:
    """The final record says ``pending``; only then may the upload start, so that its
    ``uploaded`` lands after it and is never overwritten (``DumpStore.recorded``)."""
    config = config_for(data_dir, s3.storage_settings(prefix))
    source = tmp_path / "held.zst"
    source.write_bytes(os.urandom(3000))
    key = key_for(prefix, 3)
    async with object_store(config) as store:
        stored = await store.put(key, source)
        assert stored.record_fields() == {
            "dump_key": key,
            "dump_bytes": 3000,
            "dump_sha256": stored.extra["dump_sha256"],
            "dump_location": "outbox",
            "dump_upload_state": "pending",
            "dump_upload_attempts": 0,
        }
        assert store.outbox.files == 1 and store._queue.empty()  # held: no upload yet
        with pytest.raises(FileNotFoundError):  # obstore's "no such object"
            await obstore.head_async(s3.client(), key)
        await store.recorded(key)
        await store.recorded(key)  # a retried finish: queued once
        await wait_until(lambda: store.outbox.files == 0, what="the upload")
    meta = await obstore.head_async(s3.client(), key)
    assert meta["size"] == 3000


async def test_outbox_survives_an_unreachable_bucket_and_a_restart(
    s3: SeaweedFS, data_dir: Path, tmp_path: Path, prefix: str
) -> None:
    down = config_for(
        data_dir,
        s3.storage_settings(
            prefix, endpoint=dead_endpoint(), retry_initial_s=0.05, retry_max_s=0.2
        ),
    )
    payloads = {key_for(prefix, n): os.urandom(2000 + n) for n in range(3)}
    async with object_store(down) as store:
        with pytest.raises(StoreUnavailable):
            await store.ping()
        for n, (key, data) in enumerate(payloads.items()):
            source = tmp_path / f"{n}.zst"
            source.write_bytes(data)
            await store.put(key, source)  # finishes although the bucket is down
            await store.recorded(key)
        await wait_until(lambda: store.backlog()["last_error"] is not None, what="a failure")
        backlog = store.backlog()
        assert backlog["files"] == 3
        assert backlog["bytes"] == sum(len(d) for d in payloads.values())
        for key, data in payloads.items():  # still readable, from the outbox
            assert b"".join([c async for c in store.read(key)]) == data
    assert len(list(down.outbox_dir.glob("*.json"))) == 3  # the queue is on disk

    up = config_for(data_dir, s3.storage_settings(prefix))
    async with object_store(up) as store:  # a restart: the queue comes back from disk
        await wait_until(lambda: store.outbox.files == 0, what="outbox drained")
    assert list(up.outbox_dir.iterdir()) == []
    client = s3.client()
    for key, data in payloads.items():
        assert bytes(await (await obstore.get_async(client, key)).bytes_async()) == data


async def test_delete_of_a_queued_dump_cancels_its_upload(
    s3: SeaweedFS, data_dir: Path, tmp_path: Path, prefix: str
) -> None:
    down = config_for(data_dir, s3.storage_settings(prefix, endpoint=dead_endpoint()))
    key = key_for(prefix, 7)
    source = tmp_path / "doomed.zst"
    source.write_bytes(b"expired before upload")
    async with object_store(down, upload=False) as store:
        await store.put(key, source)
        assert store.outbox.files == 1
        with pytest.raises(StoreUnavailable):
            await store.delete(key)  # the bucket half cannot be done now...
        assert store.outbox.files == 0  # ...but the local copy is gone, never uploaded
    up = config_for(data_dir, s3.storage_settings(prefix))
    async with object_store(up) as store:
        with pytest.raises(NotFound):
            _ = [c async for c in store.read(key)]


async def test_credentials_come_from_the_environment(
    s3: SeaweedFS, data_dir: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = s3.storage_settings(prefix)
    del settings["access_key_id"], settings["secret_access_key"]
    config = config_for(data_dir, settings)

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rtcstats-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    async with object_store(config, upload=False) as store:
        with pytest.raises(StoreUnavailable):
            await store.ping()

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "rtcstats-test-secret")
    async with object_store(config, upload=False) as store:
        await store.ping()


def test_keys_given_in_config_are_never_printed(tmp_path: Path) -> None:
    config = build_config(
        {"storage": {"backend": "s3", "bucket": "b"}, "server": {"data_dir": str(tmp_path)}},
        environ={
            "RTCSTATS_STORAGE__ACCESS_KEY_ID": "AKIDEXAMPLE",
            "RTCSTATS_STORAGE__SECRET_ACCESS_KEY": "very-secret",
        },
    )
    shown = repr(masked_dump(config)) + repr(config)
    assert "very-secret" not in shown and "AKIDEXAMPLE" not in shown
    assert masked_dump(config)["storage"]["secret_access_key"] == "********"


async def test_ping_reports_an_unreachable_bucket_quickly(data_dir: Path) -> None:
    config = config_for(
        data_dir,
        {
            "backend": "s3",
            "bucket": "b",
            "endpoint": dead_endpoint(),
            "access_key_id": "k",
            "secret_access_key": "s",
        },
    )
    async with object_store(config, upload=False) as store:
        began = time.monotonic()
        with pytest.raises(StoreUnavailable, match="s3://b"):
            await asyncio.wait_for(store.ping(), timeout=10)
        assert time.monotonic() - began < 5


def test_a_client_that_cannot_be_built_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT", "AZURE_ACCOUNT_NAME"):
        monkeypatch.delenv(name, raising=False)
    config = config_for(tmp_path, {"backend": "azure", "bucket": "dumps"})
    with pytest.raises(ConfigError, match=r"storage\.backend"):
        open_object_store(config.storage)
