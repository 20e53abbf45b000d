"""Moves jobs through the queue: lease, prepare, upload, record the outcome.

One ``Forwarding`` per forwarder and process. Its workers lease due jobs from the
shared queue, renew the lease while an upload runs (and abandon the upload if the
lease was lost, so no dump goes up twice under two live leases), and write what
happened into the session record, where the API and customers' backends read it:

``forward_state`` (pending / uploading / uploaded / failed), ``forward_attempts``,
``forward_error`` and ``forward_error_code`` (the upstream's ``error``/``errorCode``,
or ``timeout`` / ``network``), ``forward_http_status``, ``forwarded_at``, and the
forwarder's own result fields (``rtcstats_id``, ``rtcstats_url``, ``embed_url``,
``embed_url_absent``).

Data flows one way: the finish (``sessions/finish.py``) asks each stored session's
``contribute`` (the record then says ``forward_state: pending``) and, once the record
is written, ``stored`` (the job is queued); nothing here calls back into sessions.
Every later change goes through ``metadata.steps.record_step`` with this step's own
fields, never a read of the record followed by a write of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rtcstats_server.config import Config, RtcstatsComConfig
from rtcstats_server.exceptions import (
    DumpFormatError,
    NotFound,
    RtcstatsError,
    StoreUnavailable,
    UpstreamError,
)
from rtcstats_server.forwarders import payload
from rtcstats_server.forwarders.base import Forwarder, Upload, UploadResult
from rtcstats_server.forwarders.selection import Selection
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.factory import make_job_queue
from rtcstats_server.metadata.jobs import Job, JobQueue, JobState, LeaseLost, backoff_s, under_lease
from rtcstats_server.metadata.record import Step
from rtcstats_server.metadata.steps import record_step
from rtcstats_server.metrics import Metrics
from rtcstats_server.storage.base import DumpStore

log = logging.getLogger(__name__)

#: Statuses that mean every later upload fails the same way: raise the alert.
AUTH_ALERTS = {401: "unauthorized", 402: "no_credits"}


def _error_code(exc: UpstreamError) -> str:
    if exc.error_code:
        return exc.error_code
    if exc.status is not None:
        return f"http_{exc.status}"
    return "timeout" if exc.error.startswith("no answer") else "network"


class Forwarding:
    def __init__(
        self,
        forwarder: Forwarder,
        queue: JobQueue,
        settings: RtcstatsComConfig,
        records: SessionStore,
        dumps: DumpStore,
        metrics: Metrics,
        spool_dir: Path,
        node_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.forwarder = forwarder
        self.queue = queue
        self.settings = settings
        self.selection = Selection(settings)
        self.records = records
        self.dumps = dumps
        self.metrics = metrics
        self.spool_dir = spool_dir
        #: Distinct per process start: a restarted collector must not mistake the
        #: leases of its previous life for live ones of its own.
        self.owner = f"{node_id}/{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self._workers: list[asyncio.Task[None]] = []
        self._in_flight: dict[str, Job] = {}
        #: Sessions whose final upload call has been sent (the lease was confirmed).
        self._committing: set[str] = set()
        metrics.forward_unconfirmed.labels(forwarder.name)  # 0 until it happens
        self._wake = asyncio.Event()
        self._open = False

    @property
    def name(self) -> str:
        return self.forwarder.name

    # -- life -------------------------------------------------------------------------

    async def open(self) -> None:
        """Queue and forwarder ready, no workers (the CLI and tests drive jobs by hand)."""
        await asyncio.to_thread(shutil.rmtree, self.spool_dir, ignore_errors=True)
        await asyncio.to_thread(self.spool_dir.mkdir, parents=True, exist_ok=True)
        await self.queue.open()
        await self.forwarder.open()
        self._open = True

    async def start(self) -> None:
        await self.open()
        self._workers = [
            asyncio.create_task(self._work_forever(), name=f"forward-{self.name}-{n}")
            for n in range(self.settings.concurrency)
        ]

    async def stop(self) -> None:
        """Stop workers; uploads cut short give their job back, due now."""
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        now = self.clock()
        for job in list(self._in_flight.values()):
            with contextlib.suppress(RtcstatsError, OSError):
                if await self.queue.release(job, self.owner, now):
                    self.metrics.forward_uploads.labels(self.name, "interrupted").inc()
                    await self._record(job.session_id, {"forward_state": JobState.PENDING.value})
        self._in_flight.clear()
        if self._open:
            self._open = False
            await self.forwarder.close()
            await self.queue.close()

    # -- enqueueing ---------------------------------------------------------------------

    def _takes(self, record: Mapping[str, Any]) -> bool:
        reason = self.selection.rejects(record)
        if reason is not None:
            log.debug("session %s not forwarded to %s: %s", record["id"], self.name, reason)
        return reason is None

    async def contribute(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        """The finish's hook: a session this forwarder takes is recorded pending."""
        if not self._open or not self._takes(record):
            return {}
        return {"forward_state": JobState.PENDING.value, "forward_attempts": 0}

    async def stored(self, record: Mapping[str, Any]) -> None:
        """The finish's hook, once the record is written: queue the job (idempotent;
        raises when the queue cannot take it now, and the finish retries)."""
        session_id = str(record["id"])
        if not self._open:
            log.warning("session %s stored after forwarding stopped: not enqueued", session_id)
            return
        if self._takes(record):
            if await self.queue.enqueue(session_id, self.name, self.clock()):
                self._wake.set()

    async def enqueue(self, session_id: str, force: bool = False) -> bool:
        """Create (or with ``force``, re-arm) the job; False if one is already running."""
        queued = await self.queue.enqueue(session_id, self.name, self.clock(), force=force)
        if queued:
            await self._record(
                session_id,
                {"forward_state": JobState.PENDING.value, "forward_attempts": 0},
            )
            self._wake.set()
        return queued

    # -- working ------------------------------------------------------------------------

    async def _work_forever(self) -> None:
        while True:
            try:
                if await self.run_once():
                    continue
                await self.refresh_depth()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("forwarding worker %s: unexpected error; continuing", self.name)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_s)

    async def refresh_depth(self) -> None:
        counts = await self.queue.counts(self.name)
        for state, count in counts.items():
            self.metrics.forward_queue.labels(self.name, state.value).set(count)

    async def run_once(self, only: Collection[str] | None = None) -> bool:
        """Lease and process one due job; False when none is due."""
        job = await self.queue.lease(
            self.name, self.owner, self.clock(), self.settings.lease_s, only
        )
        if job is None:
            return False
        self._in_flight[job.session_id] = job
        try:
            await self._process(job)
        finally:
            self._in_flight.pop(job.session_id, None)
            self._committing.discard(job.session_id)
        return True

    async def _process(self, job: Job) -> None:
        if job.attempts > self.settings.max_attempts:
            # A job reclaimed again and again (processes dying mid-upload) stops here.
            await self._fail(job, None, f"gave up after {job.attempts - 1} attempts", "attempts")
            return
        record = await self.records.get(job.session_id)
        if record is None:
            await self._fail(job, None, "the session record no longer exists", "no_record")
            return
        await self._record(
            job.session_id,
            {"forward_state": JobState.UPLOADING.value, "forward_attempts": job.attempts},
        )
        started = time.monotonic()
        try:
            result = await under_lease(
                self.queue,
                job,
                self.owner,
                self.settings.lease_s,
                self.clock,
                self._prepare_and_upload(record, job),
            )
        except LeaseLost:
            self.metrics.forward_uploads.labels(self.name, "lease_lost").inc()
            self._unconfirmed(job, "lease lost while waiting for the answer")
            log.warning("session %s: lease lost mid-upload; another process has it", job.session_id)
            return
        except UpstreamError as exc:
            self.metrics.forward_seconds.labels(self.name).observe(time.monotonic() - started)
            if exc.status is None:
                self._unconfirmed(job, exc.error)
            await self._upstream_failed(job, exc)
            return
        except NotFound as exc:
            await self._fail(job, None, f"dump missing: {exc}", "no_dump")
            return
        except DumpFormatError as exc:
            await self._fail(job, None, f"dump cannot be converted: {exc}", "conversion_failed")
            return
        except (StoreUnavailable, OSError) as exc:
            await self._retry(job, f"local: {exc!r}", "store_unavailable", None, None)
            return
        self.metrics.forward_seconds.labels(self.name).observe(time.monotonic() - started)
        await self._succeeded(job, result)

    async def _prepare_and_upload(self, record: dict[str, Any], job: Job) -> UploadResult:
        upload: Upload | None = None

        async def still_ours() -> None:
            # The renewals of under_lease run every third of the lease; a process
            # stalled longer than the lease (load, a long pause) finds out only at its
            # next renewal, and by then its upload may have gone through while another
            # process uploads the same session. Asking right before the final step
            # closes that window but for the one round trip of the assemble call.
            if not await self.queue.renew(job, self.owner, self.clock(), self.settings.lease_s):
                raise LeaseLost
            self._committing.add(job.session_id)

        try:
            upload = await payload.prepare(
                record, self.dumps, self.spool_dir, self.forwarder.payload_format
            )
            return await self.forwarder.upload(upload, still_ours)
        finally:
            await payload.discard(upload)

    # -- outcomes -----------------------------------------------------------------------

    async def _complete(self, job: Job, fields: dict[str, Any]) -> bool:
        """Mark the job uploaded, again while the database is away for a moment.

        The upload has landed; a job left ``uploading`` is taken over once its lease
        runs out, and the session goes up a second time. The lease was renewed at most
        a third of it ago, so half a lease of trying stays inside it.
        """
        give_up = time.monotonic() + self.settings.lease_s / 2
        pause = 0.05
        while True:
            try:
                return await self.queue.complete(job, self.owner, self.clock(), fields)
            except StoreUnavailable as exc:
                if time.monotonic() >= give_up:
                    log.error(
                        "session %s uploaded, but the queue could not record it: it will "
                        "be uploaded again once its lease expires: %s",
                        job.session_id,
                        exc,
                    )
                    raise
                log.warning(
                    "session %s uploaded; recording it waits for the queue: %s",
                    job.session_id,
                    exc,
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _unconfirmed(self, job: Job, why: str) -> None:
        """The final call went out and no answer came back: it may have landed, and
        the next attempt (ours or another process's) sends the session again."""
        if job.session_id in self._committing:
            self.metrics.forward_unconfirmed.labels(self.name).inc()
            log.warning(
                "session %s: %s sent its final call and got no answer (%s); if it landed, "
                "the session will be upstream twice",
                job.session_id,
                self.name,
                why,
            )

    async def _succeeded(self, job: Job, result: UploadResult) -> None:
        now = self.clock()
        fields = {"upstream_id": result.upstream_id, **result.record_fields}
        if not await self._complete(job, fields):
            # Our upload landed after our lease had been taken over: the process that
            # holds the job now uploads the session again (or already has). Counted,
            # so that at-least-once delivery across a lost lease shows; the record
            # keeps the job holder's answer.
            self.metrics.forward_uploads.labels(self.name, "duplicate").inc()
            log.error(
                "session %s uploaded to %s as %s after its lease had been taken over: "
                "it may be uploaded twice",
                job.session_id,
                self.name,
                result.upstream_id,
            )
            return
        self.metrics.forward_uploads.labels(self.name, "uploaded").inc()
        for reason in AUTH_ALERTS.values():
            self.metrics.forward_auth_alert.labels(self.name, reason).set(0)
        await self._record(
            job.session_id,
            {
                **result.record_fields,
                "forward_state": JobState.UPLOADED.value,
                "forward_attempts": job.attempts,
                "forward_error": None,
                "forward_error_code": None,
                "forward_http_status": None,
                "forwarded_at": datetime.fromtimestamp(now, UTC),
            },
        )
        log.info("session %s uploaded to %s as %s", job.session_id, self.name, result.upstream_id)

    async def _upstream_failed(self, job: Job, exc: UpstreamError) -> None:
        code = _error_code(exc)
        if exc.retryable:
            await self._retry(job, exc.error, code, exc.status, exc.retry_after_s)
            return
        alert = AUTH_ALERTS.get(exc.status or 0)
        if alert is not None:
            self.metrics.forward_auth_alert.labels(self.name, alert).set(1)
            log.error(
                "%s refuses our uploads (HTTP %s %s): every upload will fail until fixed",
                self.name,
                exc.status,
                code,
            )
        await self._fail(job, exc.status, exc.error, code)

    async def _retry(
        self,
        job: Job,
        error: str,
        code: str,
        status: int | None,
        retry_after: float | None,
    ) -> None:
        if job.attempts >= self.settings.max_attempts:
            await self._fail(job, status, f"{error} (after {job.attempts} attempts)", code)
            return
        now = self.clock()
        due = now + backoff_s(
            job.attempts, self.settings.backoff_base_s, self.settings.backoff_max_s, retry_after
        )
        if not await self.queue.retry(job, self.owner, now, due, f"{code}: {error}"):
            self.metrics.forward_uploads.labels(self.name, "lease_lost").inc()
            return
        self.metrics.forward_uploads.labels(self.name, "retried").inc()
        log.warning(
            "session %s: upload to %s failed (%s: %s), attempt %d, next in %.1f s",
            job.session_id,
            self.name,
            code,
            error,
            job.attempts,
            due - now,
        )
        await self._record(
            job.session_id,
            {
                "forward_state": JobState.PENDING.value,
                "forward_attempts": job.attempts,
                "forward_error": error,
                "forward_error_code": code,
                "forward_http_status": status,
                "forward_next_attempt_at": datetime.fromtimestamp(due, UTC),
            },
        )
        self._wake.set()

    async def _fail(self, job: Job, status: int | None, error: str, code: str) -> None:
        if not await self.queue.fail(job, self.owner, self.clock(), f"{code}: {error}"):
            self.metrics.forward_uploads.labels(self.name, "lease_lost").inc()
            return
        self.metrics.forward_uploads.labels(self.name, "failed").inc()
        log.error(
            "session %s: upload to %s failed for good: %s: %s",
            job.session_id,
            self.name,
            code,
            error,
        )
        await self._record(
            job.session_id,
            {
                "forward_state": JobState.FAILED.value,
                "forward_attempts": job.attempts,
                "forward_error": error,
                "forward_error_code": code,
                "forward_http_status": status,
            },
        )

    async def _record(self, session_id: str, fields: dict[str, Any]) -> None:
        try:
            await record_step(self.records, session_id, Step.FORWARDING, fields)
        except (RtcstatsError, OSError) as exc:
            # The queue is the truth; the record catches up with the next transition.
            log.error("session %s: record not updated with %s: %r", session_id, fields, exc)


def make_forwarding(
    config: Config, records: SessionStore, dumps: DumpStore, metrics: Metrics, node_id: str
) -> Forwarding | None:
    """The rtcstats.com forwarding when configured; None (and one log line) when not."""
    from rtcstats_server.forwarders.rtcstats_com import RtcstatsComForwarder

    settings = config.forwarders.rtcstats_com
    if not settings.endpoint or not settings.token.get_secret_value():
        missing = "endpoint" if not settings.endpoint else "token"
        log.info(
            "forwarding to rtcstats.com is off: forwarders.rtcstats_com.%s is not set", missing
        )
        return None
    queue = make_job_queue(config)
    return Forwarding(
        RtcstatsComForwarder(settings),
        queue,
        settings,
        records,
        dumps,
        metrics,
        config.server.data_dir / "forward",
        node_id,
    )
