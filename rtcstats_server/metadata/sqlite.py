"""Opening the SQLite files of the embedded backends (records, forward jobs) alike.

WAL lets readers (the API) run beside the single writer; ``synchronous=NORMAL`` with
WAL keeps every committed transaction across a process crash, which is the failure
these files must survive (power loss may cost the last transactions).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

import aiosqlite


async def open_sqlite(path: Path, schema: Iterable[str]) -> aiosqlite.Connection:
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    db = await aiosqlite.connect(path, isolation_level=None, timeout=30)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=NORMAL")
    for statement in schema:
        await db.execute(statement)
    return db
