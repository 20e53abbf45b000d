"""How much local disk finished-but-not-uploaded and live dumps hold, and the cap on it.

New connections are refused (HTTP 503) above ``storage.spool_max_bytes``: a full disk
would corrupt every live dump at once, a refused client only loses its own session.
The live directory is measured in a thread once per period (cheap: one stat per live
session); the outbox is counted exactly as entries come and go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
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


class Spool:
    def __init__(
        self,
        live_dir: Path,
        max_bytes: int,
        outbox: Outbox | None = None,
        period_s: float = 1.0,
    ) -> None:
        self.live_dir = live_dir
        self.max_bytes = max_bytes
        self.outbox = outbox
        self.period_s = period_s
        self.live_bytes = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def used_bytes(self) -> int:
        return self.live_bytes + (self.outbox.bytes if self.outbox is not None else 0)

    @property
    def full(self) -> bool:
        return self.used_bytes > self.max_bytes

    async def measure(self) -> None:
        self.live_bytes = await asyncio.to_thread(_directory_bytes, self.live_dir)

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
