"""The analysis step: a stored session's summary and features, off the finish's path.

The finish (``sessions/finish.py``) queues one job per stored session in the
durable, leased job queue that forwarding uses (``metadata/jobs*.py``, SQLite or
MongoDB, worker name ``analysis``) and returns: a session is stored whether or not
its summary is ready, and a crash loses no summary (the job outlives the process;
its lease expires and another run takes it).

A job is only a session id. ``analyse`` is all it takes: read the record for the
dump's key, read the dump from the dump store, compute (summary and features in one
pass: dump_analysis.py), and set the analysis fields on the record through
``metadata.steps.record_step``. ``Analysis`` is both ends: in ``serve`` it only
queues (``start(runners=0)``) and keeps the queue-depth gauge; in a worker process
(``processes.py``) its runners lease and run jobs, each analysis on a thread of its
own (``stored.quality_fields``), and report every outcome to ``on_outcome``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from rtcstats_server.analysis.geo import GeoLocator
from rtcstats_server.analysis.stored import quality_fields
from rtcstats_server.config import QualityConfig
from rtcstats_server.exceptions import NotFound, RtcstatsError, StoreUnavailable
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.jobs import (
    Job,
    JobQueue,
    LeaseLost,
    backoff_s,
    under_lease,
)
from rtcstats_server.metadata.record import Step
from rtcstats_server.metadata.steps import record_step
from rtcstats_server.metrics import Metrics
from rtcstats_server.storage.base import DumpStore

log = logging.getLogger(__name__)

#: The analysis's name in the job queue (beside the forwarders').
ANALYSIS = "analysis"
#: Summaries computed at once: each holds a thread and a few chunks of its dump.
CONCURRENCY = 2
#: A job's lease, renewed every third of it while its summary runs.
LEASE_S = 120.0
#: How often idle runners look for jobs that other processes queued or gave back.
POLL_S = 5.0
#: Attempts before a job is given up (each waits about twice as long as the last).
MAX_ATTEMPTS = 10
BACKOFF_BASE_S, BACKOFF_MAX_S = 1.0, 300.0
#: ``rtcstats_analyses_total`` outcomes.
OUTCOMES = ("done", "retried", "failed", "lease_lost")


async def analyse(
    session_id: str,
    records: SessionStore,
    dumps: DumpStore,
    config: QualityConfig,
    locator: GeoLocator | None = None,
) -> dict[str, Any]:
    """The analysis fields of one stored session, set on its record; what was set.

    NotFound when the session has no record (yet: a record write may still wait in
    the metadata spool); StoreUnavailable when a store does not answer. A dump that
    cannot be read gives ``summary_error``, not an exception.
    """
    record = await records.get(session_id)
    if record is None:
        raise NotFound(f"no record of session {session_id}")
    key = record.get("dump_key")
    if not key:
        return {}  # nothing stored, nothing to analyse
    # A dump still in the outbox of the collector that stored it: the bucket has it soon.
    pending = record.get("dump_location") == "outbox"
    fields = await quality_fields(dumps, key, config, locator, retry_missing=pending)
    if fields and not await record_step(records, session_id, Step.ANALYSIS, fields):
        raise NotFound(f"the record of session {session_id} went away")
    return fields


class Analysis:
    """The analysis as a finish hook (queue each stored session) and its runners."""

    def __init__(
        self,
        config: QualityConfig,
        queue: JobQueue,
        records: SessionStore,
        dumps: DumpStore,
        metrics: Metrics,
        node_id: str,
        clock: Callable[[], float] = time.time,
        locator: GeoLocator | None = None,
        *,
        lease_s: float = LEASE_S,
        poll_s: float = POLL_S,
        on_outcome: Callable[[str], None] | None = None,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.lease_s = lease_s
        self.poll_s = poll_s
        #: Told each job's outcome (a worker process reports it to serve's /metrics);
        #: by default counted in ``metrics`` here.
        self.on_outcome = on_outcome or (lambda outcome: metrics.analyses.labels(outcome).inc())
        #: Told when a job was queued (serve wakes its worker processes).
        self.on_queued = on_queued
        #: Looks up the addresses a dump kept (masking off); None without geo databases.
        self.locator = locator
        self.queue = queue
        self.records = records
        self.dumps = dumps
        self.metrics = metrics
        #: Distinct per process start, as the forwarders' (see ``Forwarding.owner``).
        self.owner = f"{node_id}/{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self._runners: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._open = False

    # -- life ---------------------------------------------------------------------------

    async def start(self, runners: int = CONCURRENCY, watch_depth: bool = False) -> None:
        """``runners`` lease and run jobs here; with ``watch_depth`` (and no runners,
        which refresh it when idle) a task keeps the queue-depth gauge current."""
        await self.queue.open()
        self._open = True
        for outcome in OUTCOMES:  # every series from the start: scrapes stay comparable
            self.metrics.analyses.labels(outcome)
        self._runners = [
            asyncio.create_task(self._run_forever(), name=f"analysis-{n}") for n in range(runners)
        ]
        if watch_depth and not runners:
            self._runners.append(asyncio.create_task(self._watch_depth(), name="analysis-depth"))

    def wake(self) -> None:
        """Look for jobs now (one was queued, here or by another process)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop the runners; a summary cut short keeps its lease until it expires, and
        the job is taken up again then (by this collector's next run, or another)."""
        runners, self._runners = self._runners, []
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        if self._open:
            self._open = False
            await self.queue.close()

    # -- the finish's hook ---------------------------------------------------------------

    async def contribute(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        return {}  # the summary comes later, from the job

    async def stored(self, record: Mapping[str, Any]) -> None:
        """Queue the session's analysis (idempotent; raises when the queue cannot take
        it now, and the finish retries)."""
        if not self.config.enabled or not record.get("dump_key"):
            return
        if not self._open:
            log.warning("session %s stored after the analysis stopped: not queued", record["id"])
            return
        if await self.queue.enqueue(str(record["id"]), ANALYSIS, self.clock()):
            self._wake.set()
            if self.on_queued is not None:
                self.on_queued()

    # -- running ------------------------------------------------------------------------

    async def _run_forever(self) -> None:
        while True:
            try:
                if await self.run_once():
                    continue
                await self._refresh_depth()
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:  # the queue's database: jobs wait in it
                log.warning("analysis runner: job queue unavailable: %s", exc)
            except Exception:
                log.exception("analysis runner: unexpected error; continuing")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def _watch_depth(self) -> None:
        while True:
            try:
                await self._refresh_depth()
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:
                log.debug("analysis queue depth unknown: %s", exc)
            except Exception:
                log.exception("analysis queue depth: unexpected error; continuing")
            await asyncio.sleep(min(self.poll_s, 5.0))

    async def _refresh_depth(self) -> None:
        for state, count in (await self.queue.counts(ANALYSIS)).items():
            self.metrics.analysis_queue.labels(state.value).set(count)

    async def run_once(self) -> bool:
        """Lease and run one due job; False when none is due."""
        job = await self.queue.lease(ANALYSIS, self.owner, self.clock(), self.lease_s)
        if job is None:
            return False
        try:
            work = analyse(job.session_id, self.records, self.dumps, self.config, self.locator)
            await under_lease(self.queue, job, self.owner, self.lease_s, self.clock, work)
        except asyncio.CancelledError:
            # Stopped (SIGTERM) mid-job: give it back, due now, for the next worker.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.queue.release(job, self.owner, self.clock()), 5.0)
            raise
        except LeaseLost:
            self.on_outcome("lease_lost")
            log.warning("session %s: analysis lease lost; another process has it", job.session_id)
        except (RtcstatsError, OSError) as exc:
            await self._retry(job, exc)
        else:
            if await self.queue.complete(job, self.owner, self.clock(), {}):
                self.on_outcome("done")
        return True

    async def _retry(self, job: Job, exc: BaseException) -> None:
        now = self.clock()
        error = f"{type(exc).__name__}: {exc}"
        if job.attempts >= MAX_ATTEMPTS:
            if await self.queue.fail(job, self.owner, now, error):
                self.on_outcome("failed")
                log.error("session %s: analysis given up: %s", job.session_id, error)
            return
        due = now + backoff_s(job.attempts, BACKOFF_BASE_S, BACKOFF_MAX_S)
        if await self.queue.retry(job, self.owner, now, due, error):
            self.on_outcome("retried")
            log.warning(
                "session %s: analysis failed (%s), attempt %d, next in %.1f s",
                job.session_id,
                error,
                job.attempts,
                due - now,
            )
