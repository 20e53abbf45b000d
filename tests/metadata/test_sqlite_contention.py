"""A write SQLite refuses as locked is tried again; any other error is not."""

from __future__ import annotations

import sqlite3

import pytest

from rtcstats_server.metadata.sqlite import retry_locked


async def test_a_locked_write_is_tried_again_until_it_goes_through() -> None:
    attempts = 0

    async def write() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise sqlite3.OperationalError("database is locked")
        return "written"

    assert await retry_locked(write) == "written"
    assert attempts == 3


async def test_other_sqlite_errors_are_not_retried() -> None:
    attempts = 0

    async def write() -> None:
        nonlocal attempts
        attempts += 1
        raise sqlite3.OperationalError("no such table: sessions")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await retry_locked(write)
    assert attempts == 1
