"""Chunks of files uploaded the rtcstats.com way, kept on disk until assembled.

A file arrives as multipart chunks sharing a client-chosen ``fileId``, possibly
spread over minutes, then one ``assemble`` call joins them. Chunks live under
``<data_dir>/uploads/chunks`` rather than in memory, so a thousand slow uploaders
cost disk, not RSS; the bytes held there are bounded (``max_pending_bytes``: a
chunk beyond gets 503), and a file not assembled within ``chunk_ttl_s`` of its last
chunk is deleted by a sweep. The ``fileId`` is the client's: it never names a path;
each file's directory is a hash of it and of the credentials that sent it, so two
tokens using the same ``fileId`` never see each other's chunks.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

from rtcstats_server.config import UploadsConfig
from rtcstats_server.exceptions import UploadRefused

log = logging.getLogger(__name__)

_META: Final = "file.json"
_READ: Final = 1 << 20


def _dir_bytes(path: Path) -> int:
    """Chunk bytes of one file's directory (its small bookkeeping file not counted)."""
    total = 0
    for entry in path.iterdir():
        if entry.is_file() and not entry.name.endswith(_META):
            total += entry.stat().st_size
    return total


@dataclass
class _FileMeta:
    """What the chunks of one file must agree on, and their bytes so far."""

    total: int | None
    name: str | None
    bytes: int = 0


class ChunkStore:
    def __init__(self, root: Path, config: UploadsConfig) -> None:
        self.root = root
        self.files = root / "chunks"
        self.incoming = root / "incoming"
        self.config = config
        self.used = 0
        self._locks: dict[str, asyncio.Lock] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # -- life ------------------------------------------------------------------------

    async def open(self) -> None:
        def prepare() -> int:
            shutil.rmtree(self.incoming, ignore_errors=True)  # half-received at a crash
            self.incoming.mkdir(parents=True, exist_ok=True)
            self.files.mkdir(parents=True, exist_ok=True)
            return sum(_dir_bytes(d) for d in self.files.iterdir() if d.is_dir())

        self.used = await asyncio.to_thread(prepare)
        await self.sweep()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="upload-chunk-sweep")

    async def close(self) -> None:
        if self._sweeper is not None:
            task, self._sweeper = self._sweeper, None
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _sweep_forever(self) -> None:
        period = min(60.0, max(self.config.chunk_ttl_s / 4, 0.05))
        while True:
            await asyncio.sleep(period)
            try:
                await self.sweep()
            except OSError:
                log.exception("upload chunk sweep failed; retrying next period")

    async def sweep(self, now: float | None = None) -> int:
        """Delete files whose last chunk is older than ``chunk_ttl_s``; how many went."""
        cutoff = (time.time() if now is None else now) - self.config.chunk_ttl_s

        def expired() -> list[Path]:
            return [d for d in self.files.iterdir() if d.is_dir() and d.stat().st_mtime < cutoff]

        dropped = 0
        for directory in await asyncio.to_thread(expired):
            async with self._lock(directory.name):
                if await asyncio.to_thread(directory.exists):
                    await self._remove(directory)
                    dropped += 1
        if dropped:
            log.info("upload chunks: %d unassembled files expired", dropped)
        return dropped

    # -- one file --------------------------------------------------------------------

    def _name(self, owner: str, file_id: str) -> str:
        return hashlib.sha256(f"{owner}\0{file_id}".encode()).hexdigest()

    @asynccontextmanager
    async def _lock(self, name: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(name, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._locks.get(name) is lock:
                del self._locks[name]

    async def _remove(self, directory: Path) -> None:
        size = await asyncio.to_thread(_dir_bytes, directory)
        await asyncio.to_thread(shutil.rmtree, directory, True)
        self.used = max(0, self.used - size)

    def reserve(self, size: int) -> None:
        """Count ``size`` more pending bytes, or refuse when the area is full."""
        if self.used + size > self.config.max_pending_bytes:
            raise UploadRefused(503, "busy", "too many unfinished uploads are waiting; retry later")
        self.used += size

    def release(self, size: int) -> None:
        self.used = max(0, self.used - size)

    def scratch(self) -> Path:
        """A fresh path in the incoming area (chunks land there before their fields
        are known; raw bodies and assembled files are kept there until stored)."""
        return self.incoming / uuid.uuid4().hex

    async def add(
        self,
        owner: str,
        file_id: str,
        index: int,
        total: int | None,
        file_name: str | None,
        data: Path,
    ) -> None:
        """Move a received chunk (already counted by ``reserve``) into its file.

        ``total`` and ``file_name`` are optional in the protocol; when chunks give
        them they must agree, and without a total every index up to the highest
        must be there at assembly."""
        name = self._name(owner, file_id)
        directory = self.files / name
        size = (await asyncio.to_thread(data.stat)).st_size
        async with self._lock(name):
            meta = await asyncio.to_thread(self._read_meta, directory)
            if meta is None:
                meta = _FileMeta(total, file_name)
            elif meta.total != total or meta.name != file_name:
                raise UploadRefused(
                    400, "bad_request", "totalChunks and fileName must be the same for every chunk"
                )
            chunk = directory / str(index)
            previous = await asyncio.to_thread(self._size_or_zero, chunk)
            if meta.bytes - previous + size > self.config.max_bytes:
                await self._remove(directory)
                raise UploadRefused(
                    413, "too_large", f"the file is larger than {self.config.max_bytes} bytes"
                )
            meta.bytes += size - previous

            def place() -> None:
                directory.mkdir(parents=True, exist_ok=True)
                os.replace(data, chunk)  # a resent chunk replaces the first one
                temp = directory / f".{_META}"
                temp.write_bytes(orjson.dumps(meta))
                os.replace(temp, directory / _META)
                os.utime(directory)

            await asyncio.to_thread(place)
            self.release(previous)

    @staticmethod
    def _size_or_zero(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0

    @staticmethod
    def _read_meta(directory: Path) -> _FileMeta | None:
        try:
            meta = orjson.loads((directory / _META).read_bytes())
            return _FileMeta(meta["total"], meta["name"], int(meta["bytes"]))
        except (FileNotFoundError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    async def assemble(self, owner: str, file_id: str, file_name: str | None, target: Path) -> None:
        """Join every chunk of a file, in order, into ``target``; its chunks are gone."""
        name = self._name(owner, file_id)
        directory = self.files / name
        async with self._lock(name):
            meta = await asyncio.to_thread(self._read_meta, directory)
            if meta is None:
                raise UploadRefused(400, "bad_request", "unknown fileId (or its chunks expired)")
            if meta.name is not None and file_name is not None and meta.name != file_name:
                raise UploadRefused(400, "bad_request", "fileName differs from the chunks'")

            def join() -> list[int]:
                present = {int(p.name) for p in directory.iterdir() if p.name.isdigit()}
                total = meta.total if meta.total is not None else max(present, default=-1) + 1
                if total == 0:
                    return [0]
                missing = [i for i in range(total) if i not in present]
                if missing:
                    return missing
                with target.open("wb") as out:
                    for index in range(total):
                        with (directory / str(index)).open("rb") as part:
                            while block := part.read(_READ):
                                out.write(block)
                return []

            missing = await asyncio.to_thread(join)
            if missing:
                shown = ", ".join(str(i) for i in missing[:10])
                raise UploadRefused(400, "bad_request", f"chunks missing: {shown}")
            await self._remove(directory)
