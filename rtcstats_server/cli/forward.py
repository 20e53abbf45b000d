"""``rtcstats-server forward``: (re)send sessions upstream on an operator's demand.

Jobs are re-armed in the shared queue and then worked by this process, restricted to
those sessions, until each is uploaded or failed; a running collector may take some
of them first (the lease decides), which is just as good. Sampling and filters do not
apply: the operator asked for these sessions.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime
from typing import Any

import orjson

from rtcstats_server.config import Config
from rtcstats_server.forwarders.selection import CLIENT_DIALECTS
from rtcstats_server.forwarders.worker import Forwarding, make_forwarding
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.jobs import JobState
from rtcstats_server.metadata.record import SessionQuery
from rtcstats_server.metrics import Metrics

#: Exit codes: every session uploaded / some failed or timed out / nothing to do.
EXIT_OK, EXIT_FAILED, EXIT_DISABLED = 0, 1, 3

_FINAL = (JobState.UPLOADED, JobState.FAILED)


async def _chosen(
    records: SessionStore, session_ids: list[str], since: datetime | None, state: str | None
) -> list[dict[str, Any]]:
    chosen: list[dict[str, Any]] = []
    for session_id in session_ids:
        record = await records.get(session_id)
        if record is None:
            sys.stderr.write(f"rtcstats-server: no session {session_id}\n")
        else:
            chosen.append(record)
    if since is not None:
        cursor = None
        while True:
            page = await records.query(
                SessionQuery(since=since, limit=1000, cursor=cursor, forward_state=state)
            )
            chosen += page
            if len(page) < 1000:
                break
            cursor = (page[-1]["started_at"], page[-1]["id"])
    return [r for r in chosen if r.get("dump_key") and r.get("dialect") in CLIENT_DIALECTS]


async def _work(forwarding: Forwarding, ids: set[str], timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    outcome: dict[str, Any] = {}
    while time.monotonic() < deadline:
        outcome = {i: await forwarding.queue.get(i, forwarding.name) for i in ids}
        waiting = {i for i, job in outcome.items() if job is None or job.state not in _FINAL}
        if not waiting:
            break
        if not await forwarding.run_once(only=waiting):
            await asyncio.sleep(min(1.0, forwarding.settings.poll_interval_s))  # others hold them
    return outcome


async def forward(
    config: Config,
    session_ids: list[str],
    since: datetime | None,
    state: str | None,
    wait: bool,
    timeout_s: float,
) -> int:
    from rtcstats_server.metadata.factory import make_session_store
    from rtcstats_server.sessions.live import default_node_id
    from rtcstats_server.storage.factory import make_dump_store

    metrics = Metrics()
    records = make_session_store(config)
    dumps = make_dump_store(config)
    node_id = (config.server.node_id or default_node_id(config.server.data_dir)) + "-cli"
    forwarding = make_forwarding(config, records, dumps, metrics, node_id)
    if forwarding is None:
        sys.stderr.write("rtcstats-server: forwarding is off: set forwarders.rtcstats_com.token\n")
        return EXIT_DISABLED
    await records.open()
    await dumps.open()
    forwarding.spool_dir = config.server.data_dir / "forward-cli"
    await forwarding.open()
    try:
        chosen = await _chosen(records, session_ids, since, state)
        ids = {str(r["id"]) for r in chosen}
        for session_id in sorted(ids):
            if not await forwarding.enqueue(session_id, force=True):
                sys.stderr.write(f"rtcstats-server: {session_id} is being uploaded right now\n")
        if not wait:
            sys.stdout.write(orjson.dumps({"queued": sorted(ids)}).decode() + "\n")
            return EXIT_OK
        jobs = await _work(forwarding, ids, timeout_s)
        failed = False
        for session_id in sorted(ids):
            job = jobs.get(session_id)
            line = {
                "id": session_id,
                "forward_state": job.state.value if job else None,
                "attempts": job.attempts if job else 0,
                "error": job.last_error if job else "not queued",
                **((job.result or {}) if job else {}),
            }
            failed |= job is None or job.state is not JobState.UPLOADED
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
        return EXIT_FAILED if failed else EXIT_OK
    finally:
        await forwarding.stop()
        await dumps.close()
        await records.close()
