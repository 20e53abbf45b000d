"""Every session-record store the contract suite runs against, each on a real server.

- ``embedded``: SQLite in the test's temporary directory.
- ``ferretdb``: MongoDB wire protocol, the FerretDB server of this test session.
- ``mongodb``: a real MongoDB, only when ``RTCSTATS_TEST_MONGODB_URI`` names one
  (this machine has none: the kind is then left out, not skipped).

A factory, not a store: the reopen tests make a second store on the same data.
Each MongoDB-backed test gets its own collection, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient

from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.embedded import EmbeddedSessionStore
from rtcstats_server.metadata.mongodb import MongoSessionStore

MONGODB_URI_ENV = "RTCSTATS_TEST_MONGODB_URI"
TEST_DATABASE = "rtcstats_test"


@dataclass(frozen=True)
class StoreFactory:
    """Makes unopened stores of one ``kind``, all on the same data."""

    kind: str
    make: Callable[[], SessionStore]

    def __call__(self) -> SessionStore:
        return self.make()


def real_mongodb_uri() -> str | None:
    return os.environ.get(MONGODB_URI_ENV) or None


#: The store kinds this run tests: a real MongoDB only when one is named.
KINDS = ("embedded", "ferretdb", *(("mongodb",) if real_mongodb_uri() else ()))


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
        yield StoreFactory(kind, lambda: EmbeddedSessionStore(tmp_path / "sessions.sqlite3"))
        return
    if uri is None:
        raise ValueError(f"store kind {kind} needs a server URI")
    with mongo_collection(uri) as collection:
        yield StoreFactory(
            kind, lambda: MongoSessionStore(uri, TEST_DATABASE, collection, timeout_s=5.0)
        )
