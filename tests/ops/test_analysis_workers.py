"""Analysis in worker processes, as an operator runs it: serve's own workers
(``analysis.workers``), a host that only queues (``analysis.workers: 0``) with
``rtcstats-server analyze --workers N`` doing the work, and ``analyze --since`` to
re-analyse stored sessions. Real collector, real SQLite queue, real processes."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml

from rtcstats_server.analysis.worker import ANALYSIS
from rtcstats_server.http.keys import ANALYSIS as ANALYSIS_KEY
from rtcstats_server.metadata.jobs import JobState
from tests.services.cli import cli_env, run_cli
from tests.services.collector import RunningCollector, analysed, run_collector, wait_until
from tests.services.stored_dumps import store_dump_file

FIXTURE = "real/jitsi-chrome-standard-pc-failed.jsonl"


def write_config(tmp_path: Path, data: Path) -> Path:
    path = tmp_path / "rtcstats-server.yaml"
    tree = {"server": {"data_dir": str(data)}, "analysis": {"poll_interval_s": 0.2}}
    path.write_text(yaml.safe_dump(tree))
    return path


async def job_state(collector: RunningCollector, session_id: str) -> JobState | None:
    job = await collector.app[ANALYSIS_KEY].queue.get(session_id, ANALYSIS)
    return job.state if job is not None else None


async def test_serve_runs_the_analysis_in_its_worker_process(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    """analysis.workers=1: the record gets its summary and features from the worker
    process, and serve's /metrics counts the worker's outcome."""
    async with run_collector(tmp_path / "data", {"analysis": {"workers": 1}}) as collector:
        session_id = await store_dump_file(collector, fixtures_dir / FIXTURE)
        record = await collector.get_json(f"/v1/sessions/{session_id}")
        assert record["pc_count"] == 3 and "connection_failed" in record["findings"]
        features = (await collector.get_json(f"/v1/sessions/{session_id}/features"))["features"]
        assert features["connections"][0]["id"] == "PC_0"
        assert await job_state(collector, session_id) is JobState.UPLOADED

        async def counted() -> bool:
            text = await collector.metrics_text()
            return 'rtcstats_analyses_total{outcome="done"} 1.0' in text

        await wait_until(counted, 15, "the worker's outcome in serve's /metrics")
        text = await collector.metrics_text()
        assert "rtcstats_analysis_worker_restarts_total 0.0" in text


async def test_a_queue_only_host_and_a_standalone_analyze(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path, data)
    settings: dict[str, Any] = {"analysis": {"workers": 0, "poll_interval_s": 0.2}}
    async with run_collector(data, settings) as collector:
        # store_dump_file waits for the analysis: here nothing analyses, so it would
        # time out. The job is queued by the finish all the same.
        waiting = asyncio.create_task(store_dump_file(collector, fixtures_dir / FIXTURE))
        await wait_until(lambda: _one_record(collector), 15, "the stored record")
        page = await collector.get_json("/v1/sessions")
        session_id = page["sessions"][0]["id"]
        await wait_until(
            lambda: _state_is(collector, session_id, JobState.PENDING), 15, "the queued job"
        )
        await asyncio.sleep(1.0)  # no worker on this host: still only queued
        assert await job_state(collector, session_id) is JobState.PENDING

        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "rtcstats_server",
            "analyze",
            "--config",
            str(config),
            "--workers",
            "1",
            env=cli_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await asyncio.wait_for(waiting, 60)  # the record got its analysis
            record = await collector.get_json(f"/v1/sessions/{session_id}")
            assert analysed(record) and record["pc_count"] == 3
            assert await job_state(collector, session_id) is JobState.UPLOADED
        finally:
            if worker.returncode is None:
                worker.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(worker.communicate(), 30)
    assert worker.returncode == 0, err.decode()
    assert "1 analysis workers running" in err.decode()


async def _one_record(collector: RunningCollector) -> bool:
    page = await collector.get_json("/v1/sessions")
    return bool(page["sessions"])


async def _state_is(collector: RunningCollector, session_id: str, state: JobState) -> bool:
    return await job_state(collector, session_id) is state


async def test_analyze_since_reanalyses_stored_sessions(tmp_path: Path, fixtures_dir: Path) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path, data)
    async with run_collector(data, {"analysis": {"workers": 1}}) as collector:
        first = await store_dump_file(collector, fixtures_dir / FIXTURE)
        second = await store_dump_file(collector, fixtures_dir / FIXTURE)
        before = {
            sid: await collector.app[ANALYSIS_KEY].queue.get(sid, ANALYSIS)
            for sid in (first, second)
        }
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    ran = await run_cli("analyze", "--config", str(config), "--since", since, timeout=120)
    assert ran.code == 0, ran.err
    assert orjson.loads(ran.out) == {"queued": 2, "done": 2, "failed": 0, "unfinished": 0}
    assert "queued 2 of 2 sessions so far" in ran.err and "analysed 2 of 2" in ran.err
    async with run_collector(data, {"analysis": {"workers": 0}}) as collector:
        for sid in (first, second):
            job = await collector.app[ANALYSIS_KEY].queue.get(sid, ANALYSIS)
            old = before[sid]
            assert job is not None and old is not None
            assert job.state is JobState.UPLOADED and job.updated_at > old.updated_at
            assert job.attempts == 1  # re-armed: counted from zero again
            record = await collector.get_json(f"/v1/sessions/{sid}")
            assert record["pc_count"] == 3

    # --until before the sessions started: none of them; --no-wait only queues.
    until = (datetime.now(UTC) - timedelta(minutes=30)).isoformat()
    ran = await run_cli(
        "analyze", "--config", str(config), "--since", since, "--until", until, "--no-wait"
    )
    assert ran.code == 0, ran.err
    assert orjson.loads(ran.out) == {"queued": 0}


async def test_analyze_refuses_bad_arguments(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "data")
    for args, says in (
        (["--since", "yesterday"], "--since 'yesterday' is not an ISO date"),
        (["--until", "2025-01-01"], "--until needs --since"),
        (["--workers", "0"], "--workers must be at least 1"),
    ):
        ran = await run_cli("analyze", "--config", str(config), *args)
        assert ran.code == 2 and says in ran.err, (args, ran.err)
