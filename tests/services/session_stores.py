"""Every session-record store the contract suite runs against, each on a real server.

- ``embedded``: SQLite in the test's temporary directory.
- ``ferretdb``: MongoDB wire protocol, the FerretDB server of this test session.
- ``mongodb``: a real MongoDB, only when ``RTCSTATS_TEST_MONGODB_URI`` names one.

A factory, not a store: the reopen tests make a second store on the same data.
Each MongoDB-backed test gets its own collection, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pymongo import MongoClient

from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.embedded import EmbeddedSessionStore
from rtcstats_server.metadata.mongodb import MongoSessionStore

KINDS = ("embedded", "ferretdb", "mongodb")
MONGODB_URI_ENV = "RTCSTATS_TEST_MONGODB_URI"
TEST_DATABASE = "rtcstats_test"

StoreFactory = Callable[[], SessionStore]


def real_mongodb_uri() -> str | None:
    return os.environ.get(MONGODB_URI_ENV) or None


@contextmanager
def mongo_collection(uri: str) -> Iterator[str]:
    """A fresh collection name on ``uri``; the collection is dropped on exit."""
    name = f"sessions_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        client: MongoClient[dict[str, object]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
        try:
            client[TEST_DATABASE].drop_collection(name)
        finally:
            client.close()


@contextmanager
def store_factory(kind: str, tmp_path: Path, uri: str | None) -> Iterator[StoreFactory]:
    if kind == "embedded":
        yield lambda: EmbeddedSessionStore(tmp_path / "sessions.sqlite3")
        return
    if uri is None:
        raise ValueError(f"store kind {kind} needs a server URI")
    with mongo_collection(uri) as collection:
        yield lambda: MongoSessionStore(uri, TEST_DATABASE, collection, timeout_s=5.0)
