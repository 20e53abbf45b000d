"""Opening the SQLite files of the embedded backends (records, forward jobs) alike.

WAL lets readers (the API) run beside the single writer; ``synchronous=NORMAL`` with
WAL keeps every committed transaction across a process crash, which is the failure
these files must survive (power loss may cost the last transactions).

Each file is one ``sqlite3`` connection owned by one thread of its own
(``SqliteThread``); the event loop hands it a whole operation, a transaction with
its reads and writes, as one function (``run``). A thread hop costs the loop a
future, a self-pipe write and a wake-up: one per operation, where an async driver
that crosses over for every ``execute``, ``fetchone`` and ``COMMIT`` pays five or
six per upsert (issue 17: the finish of a session was 15 % of the loop thread).
One thread per connection also keeps its transactions from interleaving: a
function runs to its end before the next one starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

#: How long a statement waits for another connection's write lock (the busy timeout).
BUSY_TIMEOUT_S = 30.0

_Work = Callable[[sqlite3.Connection], Any]
_Item = tuple["asyncio.Future[Any] | None", _Work] | None


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # its caller was cancelled: the work ran all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SqliteThread:
    """One SQLite connection and the thread that alone uses it.

    ``run(work)`` calls ``work(connection)`` on that thread and returns what it
    returns or raises what it raises (``sqlite3`` exceptions as they are). Works run
    one at a time, in the order they were handed over. A caller cancelled while its
    work waits or runs does not stop it: a transaction is done whole or not at all,
    as the work itself decides (``transaction``).
    """

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self._queue: SimpleQueue[_Item] = SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._connection: sqlite3.Connection | None = None
        self._closed = False

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            future, work = item
            result: Any = None
            error: BaseException | None = None
            try:
                result = work(self._connection)  # type: ignore[arg-type]
            except BaseException as exc:  # handed to the caller as it is
                error = exc
            if future is None:
                continue
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                future.get_loop().call_soon_threadsafe(_settle, future, result, error)
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self, _: sqlite3.Connection | None) -> None:
        self._connection = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_S)

    async def start(self) -> None:
        self._thread.start()
        try:
            await self.run(self._connect)
        except BaseException:
            await self.close()
            raise

    def run(self, work: Callable[[sqlite3.Connection], T]) -> Awaitable[T]:
        """``work(connection)`` on the connection's thread: one hop there and back."""
        if self._closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((future, work))
        return future

    async def close(self) -> None:
        """Let the works handed over finish, close the connection, end the thread."""
        if self._closed:
            return
        self._closed = True
        if not self._thread.is_alive():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put((future, lambda _: None))  # answered once all before it ran
        self._queue.put(None)
        await future
        await asyncio.to_thread(self._thread.join)


def transaction(connection: sqlite3.Connection, work: Callable[[], T]) -> T:
    """``work`` inside ``BEGIN IMMEDIATE`` … ``COMMIT``, on the connection's thread.

    IMMEDIATE takes the write lock at once, so the reads inside see the state the
    writes apply to. Anything raised rolls everything back: nothing half-written.
    ``work`` may end the transaction itself (a ``ROLLBACK`` when there is nothing to
    write); it is committed only while still open.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = work()
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    if connection.in_transaction:
        try:
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
    return result


def changed_rows(sql: str, params: Sequence[Any]) -> Callable[[sqlite3.Connection], int]:
    """A work for ``SqliteThread.run``: one statement, and how many rows it changed."""
    return lambda connection: connection.execute(sql, params).rowcount


async def open_sqlite(path: Path, schema: Iterable[str], name: str) -> SqliteThread:
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    db = SqliteThread(path, name)
    await db.start()
    statements = list(schema)

    def prepare(connection: sqlite3.Connection) -> None:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        for statement in statements:
            connection.execute(statement)

    try:
        # Idempotent, so retried: switching a new file to WAL fails at once with
        # "locked" (no busy wait) for all but one of the connections that try it
        # together, as the workers of one host do when they start.
        await retry_locked(lambda: db.run(prepare))
    except BaseException:
        await db.close()
        raise
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
