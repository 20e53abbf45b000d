"""Opening the SQLite files of the embedded backends (records, forward jobs) alike.

WAL lets readers (the API) run beside the single writer; ``synchronous=NORMAL`` with
WAL keeps every committed transaction across a process crash, which is the failure
these files must survive (power loss may cost the last transactions).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TypeVar

import aiosqlite

T = TypeVar("T")


async def open_sqlite(path: Path, schema: Iterable[str]) -> aiosqlite.Connection:
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    db = await aiosqlite.connect(path, isolation_level=None, timeout=30)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=NORMAL")
    for statement in schema:
        await db.execute(statement)
    return db


#: How long a write keeps retrying a file another connection holds (as the busy timeout).
LOCKED_RETRY_S = 30.0


def _locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


async def retry_locked(write: Callable[[], Awaitable[T]]) -> T:
    """Run ``write``, again while SQLite says the database is locked.

    The busy timeout covers a writer waiting for the write lock, but not every case:
    a statement that reads before it writes (an ``UPDATE ... WHERE`` on a WAL file)
    fails at once with SQLITE_BUSY_SNAPSHOT when another connection to the same file
    (the job queues open their own) committed in between. A fresh attempt reads a
    fresh snapshot, so retrying is right; ``write`` must be a whole transaction.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOCKED_RETRY_S
    pause = 0.005
    while True:
        try:
            return await write()
        except sqlite3.OperationalError as exc:
            if not _locked(exc) or loop.time() >= deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.2)
