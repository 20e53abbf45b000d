"""``serve --workers N``: one supervisor, N collector processes on one port.

The supervisor binds nothing and opens no store: it starts N copies of the same
``serve`` command (each told its index), and each worker binds the port with
SO_REUSEPORT, so the kernel spreads new connections over them. Its jobs:

- start: a worker that fails before it is listening (a busy port, a bad directory)
  fails the whole start, with the worker's own one-line reason already logged, and
  the supervisor exits with the worker's status;
- restart: a worker that dies later (a crash, ``kill -9``, the OOM killer) is started
  again after a backoff that doubles from 1 s to 30 s (and resets once a worker has
  lived a minute); the new one recovers its predecessor's live sessions from its
  ``live/`` directory as after any crash;
- stop: SIGTERM or SIGINT is passed to every worker, which drains as a single process
  does (clients get 1001, every session is stored); the supervisor waits
  ``shutdown_grace_s`` plus a margin, then kills what is left.

Workers die with the supervisor: each sets PR_SET_PDEATHSIG (SIGTERM) on itself and
checks that its parent is still the supervisor that started it (``watch_parent``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

log = logging.getLogger("rtcstats_server")

#: Restart backoff: first wait, cap, and the life after which it starts again from 1 s.
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0
#: Time beyond ``shutdown_grace_s`` a draining worker gets before it is killed.
STOP_MARGIN_S = 10.0

_PR_SET_PDEATHSIG = 1


def watch_parent(supervisor_pid: int) -> None:
    """Get SIGTERM when the supervisor dies; exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != supervisor_pid:
        log.error("worker: the supervisor (pid %d) is gone; exiting", supervisor_pid)
        sys.exit(1)


def tell_ready(fd: int) -> None:
    """Tell the supervisor this worker listens (one line on the inherited pipe)."""
    with contextlib.suppress(OSError):
        os.write(fd, b"ready\n")
    with contextlib.suppress(OSError):
        os.close(fd)


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    ready: bool = False
    backoff_s: float = BACKOFF_FIRST_S
    exits: list[int] = field(default_factory=list)


class Supervisor:
    """Runs ``command + [worker args]`` ``count`` times until told to stop."""

    def __init__(self, command: Sequence[str], count: int, grace_s: float) -> None:
        self.command = list(command)
        self.count = count
        self.grace_s = grace_s
        self.workers = [_Worker(i) for i in range(count)]
        self.stopping = asyncio.Event()
        #: The status to exit with once stopped (a worker that could not start).
        self.status = 0

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        starting = [asyncio.create_task(self._start(worker)) for worker in self.workers]
        started = await asyncio.gather(*starting)
        if all(started):
            log.info("supervisor: %d workers listening (pid %d)", self.count, os.getpid())
            keepers = [asyncio.create_task(self._keep(worker)) for worker in self.workers]
            await self.stopping.wait()
            log.info("supervisor: stopping %d workers", self.count)
            for task in keepers:
                task.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)
        await self._stop_all()
        return self.status

    async def _start(self, worker: _Worker, first: bool = True) -> bool:
        """Start ``worker``; True once it listens, False if it exited first (which,
        at the ``first`` start, stops the supervisor with the worker's status)."""
        read_fd, write_fd = os.pipe()
        try:
            worker.process = await asyncio.create_subprocess_exec(
                *self.command,
                "--worker-index", str(worker.index),
                "--worker-count", str(self.count),
                "--worker-of", str(os.getpid()),
                "--ready-fd", str(write_fd),
                pass_fds=(write_fd,),
            )  # fmt: skip
        finally:
            os.close(write_fd)
        worker.started_at = time.monotonic()
        worker.ready = await asyncio.to_thread(_read_ready, read_fd)
        if not worker.ready and first:
            code = await worker.process.wait()
            log.error("supervisor: worker %d exited with %d before listening", worker.index, code)
            self.status = self.status or code or 1
            self.stopping.set()
        return worker.ready

    async def _keep(self, worker: _Worker) -> None:
        """Wait for ``worker`` to die and start it again, with backoff, until stopped."""
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            worker.exits.append(code)
            lived = time.monotonic() - worker.started_at
            if lived >= STABLE_AFTER_S:
                worker.backoff_s = BACKOFF_FIRST_S
            log.error(
                "supervisor: worker %d (pid %d) exited with %d after %.0f s; restart in %.0f s",
                worker.index,
                worker.process.pid,
                code,
                lived,
                worker.backoff_s,
            )
            await asyncio.sleep(worker.backoff_s)
            worker.backoff_s = min(worker.backoff_s * 2, BACKOFF_MAX_S)
            if not await self._start(worker, first=False):
                # A restart that cannot listen (the port taken meanwhile) is retried
                # like a crash; only the first start may fail the service.
                continue
            log.info("supervisor: worker %d restarted (pid %d)", worker.index, worker.process.pid)

    async def _stop_all(self) -> None:
        """SIGTERM to every worker, then wait for their drains; kill the overrunners."""
        processes = [w.process for w in self.workers if w.process is not None]
        running = [process for process in processes if process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        waits = [asyncio.create_task(process.wait()) for process in running]
        if not waits:
            return
        _, late = await asyncio.wait(waits, timeout=self.grace_s + STOP_MARGIN_S)
        if late:
            log.error("supervisor: %d workers overran their drain; killing them", len(late))
            for process in running:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            await asyncio.wait(late)


def _read_ready(fd: int) -> bool:
    """Blocking: True when the worker wrote its line, False at end of file (it died)."""
    try:
        with os.fdopen(fd, "rb") as pipe:
            return pipe.readline().strip() == b"ready"
    except OSError:
        return False


def supervise(command: Sequence[str], count: int, grace_s: float) -> int:
    """Run the workers until SIGTERM/SIGINT; the exit status of ``serve``."""
    return asyncio.run(Supervisor(command, count, grace_s).run())
