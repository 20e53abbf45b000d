"""The durable upload queue: finished dumps that have not reached the bucket yet.

The queue is a directory. Each entry is the dump file itself plus a small JSON
sidecar naming its key, size and checksum, so a restart re-enqueues everything that
was waiting, and nothing about the queue lives only in memory. The sidecar is
written (atomically) before the dump is moved in and removed after the dump is
removed, so a crash at any point leaves either a complete entry, a sidecar alone
(dropped at the next scan: its dump is still in the live directory and comes back
through crash recovery, or it was already uploaded) or nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import orjson

from rtcstats_server.storage.base import session_id_of

log = logging.getLogger(__name__)

_SIDECAR = ".json"
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class OutboxEntry:
    key: str
    session_id: str | None
    size: int
    sha256: str
    queued_at: float
    data: Path

    @property
    def sidecar(self) -> Path:
        return self.data.with_name(self.data.name + _SIDECAR)


def _file_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Outbox:
    """Entries by key, with running totals that admission control and metrics read.

    File work runs in threads; the index and the totals change only on the event
    loop, so readers never see a half-updated count.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.entries: dict[str, OutboxEntry] = {}
        self.bytes = 0

    @property
    def files(self) -> int:
        return len(self.entries)

    def data_path(self, key: str) -> Path:
        # Percent-encoding is reversible and keeps every key one flat, readable name.
        return self.root / quote(key, safe="")

    async def scan(self) -> list[OutboxEntry]:
        """Load what a previous run left waiting, oldest first."""
        found = await asyncio.to_thread(self._scan)
        for entry in found:
            self._index(entry)
        return found

    def _scan(self) -> list[OutboxEntry]:
        self.root.mkdir(parents=True, exist_ok=True)
        found: list[OutboxEntry] = []
        for sidecar in self.root.iterdir():
            if sidecar.name.endswith(".tmp"):
                sidecar.unlink(missing_ok=True)  # a sidecar write cut by a crash
                continue
            if not sidecar.name.endswith(_SIDECAR):
                continue
            try:
                meta = orjson.loads(sidecar.read_bytes())
                entry = OutboxEntry(
                    key=meta["key"],
                    session_id=meta["session_id"],
                    size=int(meta["size"]),
                    sha256=meta["sha256"],
                    queued_at=float(meta["queued_at"]),
                    data=self.data_path(meta["key"]),
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("outbox: unreadable entry %s left in place: %r", sidecar, exc)
                continue
            if not entry.data.exists():
                sidecar.unlink(missing_ok=True)
                continue
            found.append(entry)
        found.sort(key=lambda entry: entry.queued_at)
        return found

    async def add(self, key: str, source: Path) -> OutboxEntry:
        """Checksum ``source`` and move it into the queue under ``key``."""
        entry = await asyncio.to_thread(self._add, key, source)
        self._index(entry)
        return entry

    def _add(self, key: str, source: Path) -> OutboxEntry:
        self.root.mkdir(parents=True, exist_ok=True)
        size, sha256 = _file_digest(source)
        entry = OutboxEntry(
            key=key,
            session_id=session_id_of(key),
            size=size,
            sha256=sha256,
            queued_at=time.time(),
            data=self.data_path(key),
        )
        meta = {
            "key": key,
            "session_id": entry.session_id,
            "size": size,
            "sha256": sha256,
            "queued_at": entry.queued_at,
        }
        temporary = entry.sidecar.with_name(entry.sidecar.name + ".tmp")
        with temporary.open("wb") as handle:
            handle.write(orjson.dumps(meta))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, entry.sidecar)
        try:
            os.replace(source, entry.data)
        except OSError:  # the live directory is on another file system
            shutil.move(source, entry.data)
        _fsync_dir(self.root)
        return entry

    def _index(self, entry: OutboxEntry) -> None:
        previous = self.entries.get(entry.key)
        if previous is not None:
            self.bytes -= previous.size
        self.entries[entry.key] = entry
        self.bytes += entry.size

    async def remove(self, entry: OutboxEntry) -> None:
        """Forget an entry that reached the bucket (or whose dump was deleted)."""
        current = self.entries.get(entry.key)
        if current is not None and current is not entry:
            return  # the key was queued again meanwhile: that newer entry owns the files
        if current is entry:
            del self.entries[entry.key]
            self.bytes -= entry.size
        await asyncio.to_thread(self._remove, entry)

    def _remove(self, entry: OutboxEntry) -> None:
        entry.data.unlink(missing_ok=True)
        entry.sidecar.unlink(missing_ok=True)

    def open_data(self, key: str) -> BinaryIO | None:
        """An open handle on a queued dump, or None; blocking, call it in a thread.

        An open handle stays readable when the upload finishes and unlinks the file.
        """
        if key not in self.entries:
            return None
        with contextlib.suppress(FileNotFoundError):
            return self.data_path(key).open("rb")
        return None

    def __iter__(self) -> Iterator[OutboxEntry]:
        return iter(list(self.entries.values()))
