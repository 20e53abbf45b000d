"""``rtcstats-server analyze``: analysis workers without a collector, and re-analysis.

``--workers N`` runs N worker processes (``analysis/processes.py``) on this host
until SIGTERM or SIGINT: another host with the same configuration (the shared
MongoDB and bucket) takes analysis jobs off the collectors' hosts.

``--since DATE [--until DATE]`` re-arms the analysis job of every stored session
started in that range (a job running right now is left to finish), printing
progress, then runs worker processes until none of those jobs is waiting or
running, and prints a count of them by outcome. With ``--no-wait`` it only queues:
the collectors' workers (or a running ``analyze --workers``) do the work.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import Counter
from datetime import datetime
from typing import Any

import orjson

from rtcstats_server.analysis.processes import WorkerPool
from rtcstats_server.analysis.worker import ANALYSIS
from rtcstats_server.config import Config
from rtcstats_server.metadata.factory import make_job_queue, make_session_store
from rtcstats_server.metadata.jobs import JobQueue, JobState
from rtcstats_server.metadata.record import SessionQuery
from rtcstats_server.metrics import Metrics
from rtcstats_server.sessions.live import default_node_id

#: Exit codes: all analysed / some failed or the wait timed out / analysis is off.
EXIT_OK, EXIT_FAILED, EXIT_DISABLED = 0, 1, 3
_PAGE = 1000
#: Jobs looked at per round while waiting.
_CHECKS = 200
#: A progress line at most this often while waiting.
_PROGRESS_S = 2.0


def _node(config: Config) -> str:
    return (config.server.node_id or default_node_id(config.server.data_dir)) + "-analyze"


def _say(line: str) -> None:
    sys.stderr.write(f"rtcstats-server: {line}\n")
    sys.stderr.flush()


async def _until_signalled() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def run_workers(config: Config, count: int) -> int:
    """N worker processes until SIGTERM/SIGINT."""
    pool = WorkerPool(config, _node(config), count, Metrics())
    await pool.start()
    _say(f"{count} analysis workers running (pids {pool.pids}); SIGTERM stops them")
    try:
        await _until_signalled()
    finally:
        await pool.stop()
    return EXIT_OK


async def _requeue(
    config: Config, queue: JobQueue, since: datetime, until: datetime | None
) -> list[str]:
    """Re-arm the job of each stored session in the range; the ids re-armed."""
    records = make_session_store(config, spool=False)
    await records.open()
    ids: list[str] = []
    seen = 0
    try:
        cursor = None
        while True:
            page = await records.query(
                SessionQuery(since=since, until=until, limit=_PAGE, cursor=cursor)
            )
            for record in page:
                seen += 1
                if not record.get("dump_key"):
                    continue
                session_id = str(record["id"])
                if await queue.enqueue(session_id, ANALYSIS, time.time(), force=True):
                    ids.append(session_id)
                else:
                    _say(f"{session_id} is being analysed right now: left as it is")
            _say(f"queued {len(ids)} of {seen} sessions so far")
            if len(page) < _PAGE:
                break
            cursor = (page[-1]["started_at"], page[-1]["id"])
    finally:
        await records.close()
    return ids


async def _outcomes(queue: JobQueue, ids: list[str]) -> Counter[str]:
    states: Counter[str] = Counter()
    for session_id in ids:
        job = await queue.get(session_id, ANALYSIS)
        states["missing" if job is None else job.state.value] += 1
    return states


async def _wait(queue: JobQueue, ids: list[str], timeout_s: float) -> Counter[str]:
    """Until none of ``ids`` waits or runs (or the timeout); their states.

    Jobs re-armed together are taken about in order, so the oldest waiting ones are
    looked at, at most ``_CHECKS`` per round: a re-analysis of a million sessions
    does not read a million jobs twice a second.
    """
    deadline = time.monotonic() + timeout_s
    waiting = list(ids)
    said = 0.0
    while waiting and time.monotonic() < deadline:
        head, rest = waiting[:_CHECKS], waiting[_CHECKS:]
        still: list[str] = []
        for session_id in head:
            job = await queue.get(session_id, ANALYSIS)
            if job is not None and job.state in (JobState.PENDING, JobState.UPLOADING):
                still.append(session_id)
        waiting = still + rest
        if time.monotonic() - said >= _PROGRESS_S or not waiting:
            said = time.monotonic()
            _say(f"analysed {len(ids) - len(waiting)} of {len(ids)}")
        if still:  # the oldest are not all done: give the workers a moment
            await asyncio.sleep(0.5)
    return await _outcomes(queue, ids)


async def reanalyse(
    config: Config,
    since: datetime,
    until: datetime | None,
    workers: int,
    wait: bool,
    timeout_s: float,
) -> int:
    if not config.quality.enabled:
        _say("the analysis is off: quality.enabled is false")
        return EXIT_DISABLED
    queue = make_job_queue(config)
    await queue.open()
    try:
        ids = await _requeue(config, queue, since, until)
        summary: dict[str, Any] = {"queued": len(ids)}
        if wait and ids:
            pool = WorkerPool(config, _node(config), max(1, workers), Metrics())
            await pool.start()
            try:
                pool.wake()
                states = await _wait(queue, ids, timeout_s)
            finally:
                await pool.stop()
            summary |= {
                "done": states[JobState.UPLOADED.value],
                "failed": states[JobState.FAILED.value],
                "unfinished": states[JobState.PENDING.value] + states[JobState.UPLOADING.value],
            }
            sys.stdout.write(orjson.dumps(summary).decode() + "\n")
            return EXIT_OK if summary["done"] == len(ids) else EXIT_FAILED
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
        return EXIT_OK
    finally:
        await queue.close()
