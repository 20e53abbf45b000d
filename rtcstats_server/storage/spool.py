"""How much local disk finished-but-not-uploaded and live dumps hold, the cap on it, and
the room left on the disks the collector writes to.

New connections are refused (HTTP 503) above ``storage.spool_max_bytes``, and while a
disk the collector writes to (live dumps, local dumps, the embedded store, the
metadata spool) has less than ``storage.min_free_bytes`` free: a full disk would cut
every live session at once and leave records unwritable, a refused client only comes
back later. The live directory and the free space are measured in a thread once per
period (cheap: one stat per live session, one statvfs per disk); the outbox is counted
exactly as entries come and go. A write that fails for want of space (``ENOSPC``)
counts as a full disk at once, until a measurement finds room again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from rtcstats_server.storage.outbox import Outbox

log = logging.getLogger(__name__)


def _directory_bytes(root: Path) -> int:
    total = 0
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):  # finished meanwhile
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
    except FileNotFoundError:
        return 0
    return total


def _free_bytes(directories: Iterable[Path]) -> int | None:
    """The least free space (for unprivileged writers) among the disks of
    ``directories``; a directory not made yet is measured at its nearest parent."""
    least: int | None = None
    for directory in directories:
        path = directory
        while not path.exists() and path != path.parent:
            path = path.parent
        try:
            stat = os.statvfs(path)
        except OSError:
            continue
        free = stat.f_bavail * stat.f_frsize
        least = free if least is None else min(least, free)
    return least


class Spool:
    def __init__(
        self,
        live_dir: Path,
        max_bytes: int,
        outbox: Outbox | None = None,
        period_s: float = 1.0,
        disks: Iterable[Path] = (),
        min_free_bytes: int = 0,
    ) -> None:
        self.live_dir = live_dir
        self.max_bytes = max_bytes
        self.outbox = outbox
        self.period_s = period_s
        self.live_bytes = 0
        #: Directories whose disks must keep ``min_free_bytes`` free (the live dir too).
        self.disks = sorted({live_dir, *disks})
        self.min_free_bytes = min_free_bytes
        #: Least free bytes among those disks at the last measurement (None: unknown).
        self.free_bytes: int | None = None
        self._out_of_space = False
        self._task: asyncio.Task[None] | None = None

    @property
    def used_bytes(self) -> int:
        return self.live_bytes + (self.outbox.bytes if self.outbox is not None else 0)

    @property
    def full(self) -> bool:
        return self.used_bytes > self.max_bytes

    @property
    def disk_full(self) -> bool:
        """Too little room left to take a new session (or a write just found none)."""
        if self._out_of_space:
            return True
        return self.free_bytes is not None and self.free_bytes < self.min_free_bytes

    def out_of_space(self) -> None:
        """A write failed with ENOSPC: full until a measurement finds room again."""
        self._out_of_space = True

    def refusal(self) -> tuple[str, str] | None:
        """(metric reason, detail) while new sessions must be refused; None otherwise."""
        if self.disk_full:
            free = "no" if self.free_bytes is None else f"{self.free_bytes} bytes"
            return "disk_full", (
                f"disk is full ({free} free, storage.min_free_bytes is {self.min_free_bytes}): "
                "new connections get 503"
            )
        if self.full:
            return "spool_full", "spool is over storage.spool_max_bytes: new connections get 503"
        return None

    async def measure(self) -> None:
        self.live_bytes = await asyncio.to_thread(_directory_bytes, self.live_dir)
        free = await asyncio.to_thread(_free_bytes, self.disks)
        was_full = self.disk_full
        self.free_bytes = free
        if self._out_of_space and free is not None and free >= self.min_free_bytes:
            self._out_of_space = False
        if self.disk_full and not was_full:
            log.error("disk full (%s bytes free): new sessions are refused", free)
        elif was_full and not self.disk_full:
            log.warning("disk has room again (%s bytes free): new sessions are taken", free)

    async def start(self) -> None:
        await self.measure()
        self._task = asyncio.create_task(self._measure_forever(), name="spool-measure")

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _measure_forever(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            try:
                await self.measure()
            except OSError as exc:
                log.error("cannot measure the spool at %s: %r", self.live_dir, exc)
