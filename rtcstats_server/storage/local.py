"""Dumps in a local directory: the zero-setup default."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from rtcstats_server.exceptions import NotFound, StoreUnavailable
from rtcstats_server.storage.base import StoredDump

_CHUNK = 256 * 1024


class LocalDumpStore:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        """The file of ``key``; blocking (it resolves symlinks: a stat per part of
        the path), so called on a worker thread, with the file operation it serves.

        Keys are server-made; still refuse anything that could leave the root."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()) or ".." in Path(key).parts:
            raise NotFound(f"dump key outside the store: {key!r}")
        return path

    async def open(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        if not await asyncio.to_thread(os.access, self.root, os.W_OK):
            raise StoreUnavailable(f"dump directory {self.root} is not writable")

    async def put(self, key: str, source: Path) -> StoredDump:
        def move() -> int:
            target = self._path(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, target)
            return target.stat().st_size

        return StoredDump(key=key, size=await asyncio.to_thread(move))

    async def recorded(self, key: str) -> None:
        return None  # the dump is where it stays

    async def read(self, key: str) -> AsyncIterator[bytes]:
        try:
            handle = await asyncio.to_thread(lambda: self._path(key).open("rb"))
        except FileNotFoundError:
            raise NotFound(f"no dump stored at {key}") from None
        try:
            while chunk := await asyncio.to_thread(handle.read, _CHUNK):
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(lambda: self._path(key).unlink(missing_ok=True))
