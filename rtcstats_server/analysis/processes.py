"""Analysis worker processes: the queue's jobs run here, never on the ingest loop.

An analysis is seconds of CPU on a large dump, and a thread of the collector would
share the ingest loop's interpreter lock. So ``serve`` (and ``rtcstats-server
analyze --workers N``, on any host sharing the metadata store and the bucket)
starts a ``WorkerPool``: N processes of the ``spawn`` start method (a fresh
interpreter, no copy of the parent's sockets or threads), each running
``worker_main`` with the configuration, pickled. A worker opens its own
connections (the session store without the write spool, whose directory is the
collector's; the job queue; the dump store, reading a dump still in this host's
outbox from its file) and runs one job at a time through ``worker.Analysis``.

One pipe joins each worker to its pool: the pool sends ``wake`` when it queued a
job (idle workers otherwise poll every ``analysis.poll_interval_s``), the worker
sends each job's outcome, which the pool counts in ``rtcstats_analyses_total``:
so serve's /metrics shows the analyses of its own workers. A standalone pool has
no /metrics; the queue depth gauge of any serve on the same queue shows its work.

A worker that dies is started again (after a delay that grows while it keeps dying
young); its job keeps its lease until ``analysis.lease_s`` runs out, then any worker
takes it. SIGTERM stops a worker cleanly: the job it held is given back, due now.
Workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group: the
pool stops them) and exit when their pool's end of the pipe closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import os
import signal
import sys
import time
import types
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from rtcstats_server.analysis.geo import open_locator
from rtcstats_server.analysis.worker import OUTCOMES, Analysis
from rtcstats_server.compiled import analysis_build
from rtcstats_server.config import AnalysisConfig, Config
from rtcstats_server.exceptions import StoreUnavailable
from rtcstats_server.metadata.factory import make_job_queue, make_session_store
from rtcstats_server.metrics import Metrics
from rtcstats_server.storage.base import DumpStore
from rtcstats_server.storage.local import LocalDumpStore
from rtcstats_server.storage.objects import ObjectDumpStore, open_object_store

log = logging.getLogger(__name__)

#: The pool's message: a job was queued, look now.
WAKE = "wake"
#: How often the pool looks for dead workers.
SUPERVISE_S = 0.5
#: A worker that lived less than this died young: its restart waits longer each time.
YOUNG_S = 10.0
RESTART_BASE_S, RESTART_MAX_S = 0.5, 30.0
#: Wakes sent at most this often (a burst of finished sessions is one wake).
WAKE_COALESCE_S = 0.05
#: SIGTERM to SIGKILL when a worker does not stop (an analysis ignores cancellation
#: until its thread finishes reading the dump).
STOP_GRACE_S = 10.0

_READ_CHUNK = 256 * 1024


class _WorkerObjectDumps(ObjectDumpStore):
    """The bucket, reading a dump that is still in this host's outbox from its file.

    Never ``open``: that scans the outbox (and removes half-written sidecars) for the
    collector that owns it. The file is looked for on disk, not in an index, since the
    collector adds dumps after this process started; an open handle stays readable
    when the collector's upload unlinks it.
    """

    async def open(self) -> None:
        return None

    async def read(self, key: str) -> AsyncIterator[bytes]:
        path = self.outbox.data_path(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            handle = None
        if handle is None:
            async for chunk in super().read(key):
                yield chunk
            return
        try:
            while chunk := await asyncio.to_thread(handle.read, _READ_CHUNK):
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)


def available_cpus() -> int:
    """The CPUs this process may use: its affinity, and a cgroup v2 quota (a container
    started with ``--cpus 2`` on a 64-core host sees 64 in ``os.cpu_count()``)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit readable: the affinity says it
    return cpus


def worker_count(settings: AnalysisConfig) -> int:
    """``analysis.workers``, or one fewer than the available CPUs (at least 1)."""
    if settings.workers is not None:
        return settings.workers
    return max(1, available_cpus() - 1)


def worker_dumps(config: Config) -> DumpStore:
    """The dump store as a worker reads it (no uploads, no outbox scan)."""
    if config.storage.backend == "local":
        return LocalDumpStore(config.dumps_dir)
    return _WorkerObjectDumps(
        open_object_store(config.storage), config.storage, config.outbox_dir, upload=False
    )


def worker_main(config: Config, conn: Connection, owner: str) -> None:
    """A worker process's body (the target of a spawned process)."""
    from rtcstats_server.logs import configure_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(config.logging)
    code = 0
    try:
        asyncio.Runner().run(_work(config, conn, owner))
    except BaseException:
        log.exception("analysis worker %s crashed", owner)
        code = 1
    # Not Runner.close(): it waits for the threads of the default executor, and one
    # may still be reading a dump. Everything durable is done by now (the job given
    # back, the stores closed), so the process ends here.
    logging.shutdown()
    os._exit(code)


async def _work(config: Config, conn: Connection, owner: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    records = make_session_store(config, spool=False)
    dumps = worker_dumps(config)
    locator = await asyncio.to_thread(open_locator, config.geo)

    def report(outcome: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # the pool is gone: nobody counts
            conn.send(outcome)

    analysis = Analysis(
        config.quality,
        make_job_queue(config),
        records,
        dumps,
        Metrics(),
        owner,
        locator=locator,
        lease_s=config.analysis.lease_s,
        poll_s=config.analysis.poll_interval_s,
        on_outcome=report,
    )

    def readable() -> None:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the pool is gone: stop, as for SIGTERM
            loop.remove_reader(conn.fileno())
            stop.set()
            return
        if message == WAKE:
            analysis.wake()

    try:
        with contextlib.suppress(StoreUnavailable):  # jobs wait in the queue meanwhile
            await records.open()
        await dumps.open()
        await analysis.start(runners=1)
        loop.add_reader(conn.fileno(), readable)
        log.info("analysis worker %s started (analysis: %s)", owner, analysis_build())
        await stop.wait()
    finally:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(conn.fileno())
        await analysis.stop()
        await dumps.close()
        await records.close()
        if locator is not None:
            locator.close()
        log.info("analysis worker %s stopped", owner)


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    started: float
    restarts: int = 0


class WorkerPool:
    """``count`` worker processes, kept running until ``stop``."""

    def __init__(self, config: Config, node_id: str, count: int, metrics: Metrics) -> None:
        self.config = config
        self.node_id = node_id
        self.count = count
        self.metrics = metrics
        self.workers: dict[int, _Worker] = {}
        self._context = multiprocessing.get_context("spawn")
        self._supervisor: asyncio.Task[None] | None = None
        self._wake_pending = False
        self._stopping = False

    @property
    def pids(self) -> list[int | None]:
        return [self.workers[n].process.pid for n in sorted(self.workers)]

    async def start(self) -> None:
        for outcome in OUTCOMES:
            self.metrics.analyses.labels(outcome)
        for index in range(self.count):
            await self._spawn(index, restarts=0)
        self._supervisor = asyncio.create_task(self._supervise(), name="analysis-workers")
        log.info("analysis: %d worker processes started", self.count)

    async def _spawn(self, index: int, restarts: int) -> None:
        ours, theirs = self._context.Pipe()
        owner = f"{self.node_id}/analysis-{index}-{restarts}"
        process = self._context.Process(
            target=worker_main,
            args=(self.config, theirs, owner),
            name=f"rtcstats-analysis-{index}",
            daemon=True,  # multiprocessing ends it if this process exits without stop()
        )
        with _bare_main():
            process.start()  # fork, exec, one small write: quick, and no thread races
        theirs.close()
        self.workers[index] = _Worker(process, ours, time.monotonic(), restarts)
        asyncio.get_running_loop().add_reader(ours.fileno(), self._readable, index, ours)

    def _readable(self, index: int, conn: Connection) -> None:
        try:
            outcome = conn.recv()
        except (EOFError, OSError):  # the worker exited; the supervisor restarts it
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(conn.fileno())
            return
        if outcome in OUTCOMES:
            self.metrics.analyses.labels(outcome).inc()

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(SUPERVISE_S)
            for index, worker in list(self.workers.items()):
                if worker.process.is_alive() or self._stopping:
                    continue
                self._drain(worker.conn)
                self._forget(worker)
                lived = time.monotonic() - worker.started
                delay = 0.0
                if lived < YOUNG_S:
                    delay = min(RESTART_MAX_S, RESTART_BASE_S * 2**worker.restarts)
                log.warning(
                    "analysis worker %d (pid %s) exited with %s after %.1f s; restarting in %.1f s",
                    index,
                    worker.process.pid,
                    worker.process.exitcode,
                    lived,
                    delay,
                )
                self.metrics.analysis_worker_restarts.inc()
                await asyncio.sleep(delay)
                if self._stopping:
                    return
                await self._spawn(index, worker.restarts + 1 if lived < YOUNG_S else 0)

    def _drain(self, conn: Connection) -> None:
        with contextlib.suppress(EOFError, OSError, ValueError):
            while conn.poll():
                if (outcome := conn.recv()) in OUTCOMES:
                    self.metrics.analyses.labels(outcome).inc()

    def _forget(self, worker: _Worker) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(worker.conn.fileno())
        worker.conn.close()

    def wake(self) -> None:
        """Tell the workers a job was queued (coalesced: sent at most every 50 ms)."""
        if self._wake_pending or self._stopping:
            return
        self._wake_pending = True
        asyncio.get_running_loop().call_later(WAKE_COALESCE_S, self._send_wakes)

    def _send_wakes(self) -> None:
        self._wake_pending = False
        for worker in self.workers.values():
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(WAKE)

    async def stop(self) -> None:
        """SIGTERM every worker (each gives its job back), SIGKILL those still running
        after the grace period."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        workers = list(self.workers.values())
        for worker in workers:
            with contextlib.suppress(OSError, ValueError):
                worker.process.terminate()
        await asyncio.to_thread(_join_all, workers, STOP_GRACE_S)
        for worker in workers:
            self._drain(worker.conn)  # outcomes sent just before the worker stopped
            self._forget(worker)
        self.workers.clear()


@contextlib.contextmanager
def _bare_main() -> Iterator[None]:
    """Spawn would run this process's ``__main__`` again in the child (a script that
    embeds ``serve`` without a ``__name__`` guard would start a second collector, code
    read from stdin cannot be found at all). The worker needs none of it: its target
    is this module's, so the child is told of a bare ``__main__`` instead."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _join_all(workers: list[_Worker], grace_s: float) -> None:
    deadline = time.monotonic() + grace_s
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
    for worker in workers:
        if worker.process.is_alive():
            log.warning("analysis worker pid %s did not stop: killed", worker.process.pid)
            worker.process.kill()
            worker.process.join(5.0)
