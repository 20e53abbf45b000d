"""Chunks of files uploaded the rtcstats.com way, kept on disk until their session is stored.

A file arrives as multipart chunks sharing a client-chosen ``fileId``, possibly
spread over minutes, then one ``assemble`` call makes it a session. Chunks live under
``<data_dir>/uploads/chunks`` rather than in memory, so a thousand slow uploaders
cost disk, not RSS; a file not assembled within ``chunk_ttl_s`` of its last chunk is
deleted by a sweep. The ``fileId`` is the client's: it never names a path; each
file's directory is a hash of it and of the credentials that sent it, so two tokens
using the same ``fileId`` never see each other's chunks.

Assembly reads the chunks where they are and deletes them only once the outcome is
known: a collector killed mid-assembly keeps them, and the retried assemble
succeeds. The session id is fixed when the file's first chunk arrives (a hash of its
directory and a random nonce), so such a retry rewrites that session rather than
adding a second one. The outcome (the session id, or why the file was refused) stays
in the file's directory until ``chunk_ttl_s``: assemble calls of one ``fileId`` are
serialized, and every one after the first gets the first one's answer.

What waits here is bounded by ``max_pending_bytes`` (beyond: 503 ``busy``), and
nothing is free: each chunk counts its bytes plus ``CHUNK_COST`` (10^5 empty chunks
are 400 MB), each file ``CHUNK_COST`` for its bookkeeping, each upload in progress (a
raw body being received or converted, an assemble call waiting for its turn)
``UPLOAD_COST`` plus the bytes it holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from rtcstats_server.config import UploadsConfig
from rtcstats_server.exceptions import UploadRefused

log = logging.getLogger(__name__)

_META: Final = "file.json"
#: What a chunk (a file on disk) and a file's bookkeeping count besides their bytes.
CHUNK_COST: Final = 4096
#: What an upload in progress counts besides its bytes (its request, its turn).
UPLOAD_COST: Final = 1 << 20


@dataclass
class _FileMeta:
    """What the chunks of one file must agree on, their bytes so far, and (once
    assembled) the outcome: ``{"session": id}`` or the refusal's status and words."""

    total: int | None
    name: str | None
    nonce: str
    bytes: int = 0
    outcome: dict[str, Any] | None = None


@dataclass(frozen=True)
class Assembly:
    """A complete file: its chunks in order, their bytes, the session it becomes."""

    session_id: str
    parts: list[Path]
    size: int


def _chunk_files(directory: Path) -> list[Path]:
    return [entry for entry in directory.iterdir() if entry.name.isdigit()]


def _dir_charge(directory: Path) -> int:
    """What one file's directory counts against ``max_pending_bytes``."""
    if not directory.is_dir():
        return 0
    return CHUNK_COST + sum(CHUNK_COST + p.stat().st_size for p in _chunk_files(directory))


def _read_meta(directory: Path) -> _FileMeta | None:
    try:
        meta = orjson.loads((directory / _META).read_bytes())
        return _FileMeta(
            meta["total"], meta["name"], str(meta["nonce"]), int(meta["bytes"]), meta["outcome"]
        )
    except (FileNotFoundError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _write_meta(directory: Path, meta: _FileMeta) -> None:
    """Atomically (a crash leaves the old or the new one), and the directory's time is
    now: the sweep counts ``chunk_ttl_s`` from the last change."""
    directory.mkdir(parents=True, exist_ok=True)
    temp = directory / f".{_META}"
    temp.write_bytes(orjson.dumps(asdict(meta)))
    os.replace(temp, directory / _META)
    os.utime(directory)


class ChunkStore:
    def __init__(self, root: Path, config: UploadsConfig) -> None:
        self.root = root
        self.files = root / "chunks"
        self.incoming = root / "incoming"
        self.config = config
        self.used = 0
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # the lock, its users
        self._sweeper: asyncio.Task[None] | None = None

    # -- life ------------------------------------------------------------------------

    async def open(self) -> None:
        def prepare() -> int:
            shutil.rmtree(self.incoming, ignore_errors=True)  # half-received at a crash
            self.incoming.mkdir(parents=True, exist_ok=True)
            self.files.mkdir(parents=True, exist_ok=True)
            return sum(_dir_charge(d) for d in self.files.iterdir() if d.is_dir())

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
        """Delete files whose last change is older than ``chunk_ttl_s``; how many went."""
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
            log.info("upload chunks: %d unassembled or answered files expired", dropped)
        return dropped

    # -- accounting ------------------------------------------------------------------

    def reserve(self, size: int) -> None:
        """Count ``size`` more pending bytes, or refuse when the area is full."""
        if self.used + size > self.config.max_pending_bytes:
            raise UploadRefused(503, "busy", "too many unfinished uploads are waiting; retry later")
        self.used += size

    def release(self, size: int) -> None:
        self.used = max(0, self.used - size)

    def scratch(self) -> Path:
        """A fresh path in the incoming area (chunks land there before their fields
        are known; raw bodies are kept there until stored)."""
        return self.incoming / uuid.uuid4().hex

    # -- one file --------------------------------------------------------------------

    def _name(self, owner: str, file_id: str) -> str:
        return hashlib.sha256(f"{owner}\0{file_id}".encode()).hexdigest()

    @asynccontextmanager
    async def _lock(self, name: str) -> AsyncIterator[None]:
        """One holder per file at a time. The lock goes when nobody holds or awaits it:
        dropped as soon as it is merely unlocked, a waiter about to take it and a
        newcomer with a fresh lock would both hold one."""
        lock, users = self._locks.get(name, (asyncio.Lock(), 0))
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[name]
            if users == 1:
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)

    async def _remove(self, directory: Path) -> None:
        charge = await asyncio.to_thread(_dir_charge, directory)
        await asyncio.to_thread(shutil.rmtree, directory, True)
        self.release(charge)

    async def add(
        self,
        owner: str,
        file_id: str,
        index: int,
        total: int | None,
        file_name: str | None,
        data: Path,
    ) -> None:
        """Move a received chunk (already counted: its bytes and ``CHUNK_COST``) into
        its file.

        ``total`` and ``file_name`` are optional in the protocol; when chunks give
        them they must agree, and without a total every index up to the highest
        must be there at assembly. A chunk for a file already assembled starts a new
        file under the same ``fileId``."""
        name = self._name(owner, file_id)
        directory = self.files / name
        size = (await asyncio.to_thread(data.stat)).st_size
        async with self._lock(name):
            meta = await asyncio.to_thread(_read_meta, directory)
            if meta is not None and meta.outcome is not None:
                await self._remove(directory)
                meta = None
            new = meta is None
            if meta is None:
                self.reserve(CHUNK_COST)  # the new file's bookkeeping
                meta = _FileMeta(total, file_name, secrets.token_hex(16))
            elif meta.total != total or meta.name != file_name:
                raise UploadRefused(
                    400, "bad_request", "totalChunks and fileName must be the same for every chunk"
                )
            chunk = directory / str(index)
            previous = await asyncio.to_thread(_size_or_none, chunk)
            if meta.bytes - (previous or 0) + size > self.config.max_bytes:
                if new:
                    self.release(CHUNK_COST)
                else:
                    await self._remove(directory)
                raise UploadRefused(
                    413, "too_large", f"the file is larger than {self.config.max_bytes} bytes"
                )
            meta.bytes += size - (previous or 0)

            def place() -> None:
                directory.mkdir(parents=True, exist_ok=True)
                os.replace(data, chunk)  # a resent chunk replaces the first one
                _write_meta(directory, meta)

            await asyncio.to_thread(place)
            if previous is not None:
                self.release(CHUNK_COST + previous)

    async def assemble(
        self,
        owner: str,
        file_id: str,
        file_name: str | None,
        store: Callable[[Assembly], Awaitable[str]],
    ) -> str:
        """The session of a file: ``store`` makes it from the chunks, once; every other
        call (at the same time or later) gets the same session, or the same refusal.

        The chunks go once the outcome is written; when ``store`` fails otherwise (or
        the process dies) they stay, and assembling again tries again."""
        name = self._name(owner, file_id)
        directory = self.files / name
        async with self._lock(name):
            meta = await asyncio.to_thread(_read_meta, directory)
            if meta is None:
                raise UploadRefused(400, "bad_request", "unknown fileId (or its chunks expired)")
            if meta.outcome is not None:
                return _answer(meta.outcome)
            if meta.name is not None and file_name is not None and meta.name != file_name:
                raise UploadRefused(400, "bad_request", "fileName differs from the chunks'")
            parts = await asyncio.to_thread(self._parts, directory, meta)
            session_id = hashlib.sha256(f"{name}\0{meta.nonce}".encode()).hexdigest()[:32]
            try:
                stored = await store(Assembly(session_id, parts, meta.bytes))
            except UploadRefused as exc:
                meta.outcome = {
                    "status": exc.status,
                    "errorCode": exc.error_code,
                    "error": exc.message,
                }
                await self._answered(directory, meta)
                raise
            meta.outcome = {"session": stored}
            await self._answered(directory, meta)
            return stored

    @staticmethod
    def _parts(directory: Path, meta: _FileMeta) -> list[Path]:
        present = {int(p.name) for p in _chunk_files(directory)}
        total = meta.total if meta.total is not None else max(present, default=-1) + 1
        missing = [i for i in range(total) if i not in present]
        if missing:
            shown = ", ".join(str(i) for i in missing[:10])
            raise UploadRefused(400, "bad_request", f"chunks missing: {shown}")
        return [directory / str(index) for index in range(total)]

    async def _answered(self, directory: Path, meta: _FileMeta) -> None:
        """The outcome is kept; the chunks go."""

        def settle() -> int:
            _write_meta(directory, meta)
            freed = 0
            for part in _chunk_files(directory):
                freed += CHUNK_COST + part.stat().st_size
                part.unlink()
            return freed

        self.release(await asyncio.to_thread(settle))


def _size_or_none(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _answer(outcome: dict[str, Any]) -> str:
    """The session an earlier assembly made, or its refusal raised again."""
    if isinstance(outcome.get("session"), str):
        return str(outcome["session"])
    raise UploadRefused(
        int(outcome.get("status", 400)),
        str(outcome.get("errorCode", "bad_request")),
        str(outcome.get("error", "this file was refused")),
    )
