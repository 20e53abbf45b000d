"""What only the MongoDB store promises: the public document shape, indexes, outages.

The contract shared with the embedded store is in test_store_contract.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from rtcstats_server.cli.main import main as cli_main
from rtcstats_server.config import build_config
from rtcstats_server.exceptions import ConfigError, StoreUnavailable
from rtcstats_server.metadata.mongodb import MongoSessionStore
from rtcstats_server.metadata.record import DOCUMENT_FILTERS, EQUALITY_FILTERS
from tests.services.collector import free_port
from tests.services.ferretdb import FerretDB
from tests.services.session_stores import TEST_DATABASE, mongo_collection

STARTED = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)


@pytest.fixture
def collection(ferretdb: FerretDB) -> Iterator[str]:
    with mongo_collection(ferretdb.uri) as name:
        yield name


@pytest.fixture
async def store(ferretdb: FerretDB, collection: str) -> AsyncIterator[MongoSessionStore]:
    store = MongoSessionStore(ferretdb.uri, TEST_DATABASE, collection, timeout_s=5)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def raw(ferretdb: FerretDB, collection: str) -> AsyncIterator[AsyncMongoClient[dict]]:  # type: ignore[type-arg]
    """A plain client, as a customer's backend would read the collection."""
    client: AsyncMongoClient[dict] = AsyncMongoClient(ferretdb.uri)  # type: ignore[type-arg]
    try:
        yield client
    finally:
        await client.close()


async def test_document_is_the_public_record(
    store: MongoSessionStore,
    raw: AsyncMongoClient[dict],
    collection: str,  # type: ignore[type-arg]
) -> None:
    await store.upsert("a" * 32, {"state": "streaming", "started_at": STARTED, "messages": 0})
    await store.upsert("a" * 32, {"state": "stored", "ended_at": STARTED, "messages": 7})
    doc = await raw[TEST_DATABASE][collection].find_one({"conference_id": None})
    assert doc is not None
    assert doc["_id"] == doc["id"] == "a" * 32
    # BSON dates, not strings: a backend's range queries and mongosh's ISODate() work.
    assert isinstance(doc["started_at"], datetime)
    assert doc["started_at"] == STARTED.replace(tzinfo=None)  # naive UTC without tz_aware
    assert (doc["state"], doc["state_rank"], doc["messages"]) == ("stored", 2, 7)


async def test_indexes_serve_every_api_filter(
    store: MongoSessionStore,
    raw: AsyncMongoClient[dict],
    collection: str,  # type: ignore[type-arg]
) -> None:
    await store.close()
    await store.open()  # a second start finds them all and changes nothing
    info = await raw[TEST_DATABASE][collection].index_information()
    keys = {name: [tuple(k) for k in spec["key"]] for name, spec in info.items()}
    for name in (*EQUALITY_FILTERS, *DOCUMENT_FILTERS, "forward_state", "findings"):
        assert [(name, 1), ("started_at", -1)] in keys.values(), name
    assert [("max_loss_pct", -1)] in keys.values()
    assert [("started_at", -1), ("_id", -1)] in keys.values()
    assert [("state", 1), ("node_id", 1)] in keys.values()
    unique = [spec["key"] for spec in info.values() if spec.get("unique")]
    assert [("id", 1)] in [[tuple(k) for k in key] for key in unique]


async def test_unreachable_server_is_unavailable_not_a_crash() -> None:
    port = free_port()  # nothing listens there
    store = MongoSessionStore(
        f"mongodb://reader:s3cret@127.0.0.1:{port}/", "db", "sessions", timeout_s=0.3
    )
    began = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    assert time.monotonic() - began < 5
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    with pytest.raises(StoreUnavailable):
        await store.upsert("b" * 32, {"state": "streaming", "started_at": STARTED})
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.close()


async def test_a_bad_uri_is_a_config_error_without_the_secret() -> None:
    store = MongoSessionStore("mongodb://reader:s3cret@host:notaport/", "db", "c")
    with pytest.raises(ConfigError) as caught:
        await store.open()
    assert caught.value.key == "metadata.uri"
    assert "s3cret" not in str(caught.value)


def test_uri_is_masked_in_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rtcstats.yaml"
    path.write_text("metadata:\n  backend: mongodb\n  database: telemetry\n")
    monkeypatch.setenv("RTCSTATS_METADATA__URI", "mongodb://writer:s3cret@db.example:27017/")
    assert cli_main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out
    assert "uri: '********'" in out
    assert "database: telemetry" in out
    config = build_config({"metadata": {"backend": "mongodb", "uri": "mongodb://u:p@h/"}}, {})
    assert "u:p@" not in repr(config)


def test_a_uri_of_another_database_is_refused_by_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rtcstats.yaml"
    path.write_text("metadata:\n  backend: mongodb\n")
    monkeypatch.setenv("RTCSTATS_METADATA__URI", "postgres://writer:s3cret@db.example/")
    assert cli_main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "metadata.uri must start with mongodb://" in err
    assert "s3cret" not in err
