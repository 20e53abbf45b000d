"""Forwarding end to end: real fixtures stream into a collector, which uploads them to
the rtcstats.com stand-in; every fault of the stand-in has its expected outcome."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from rtcstats_server.analysis.worker import ANALYSIS
from rtcstats_server.cli.main import main
from rtcstats_server.config import build_config
from rtcstats_server.dumps.reader import DumpReader
from rtcstats_server.forwarders.worker import Forwarding, make_forwarding
from rtcstats_server.metadata.factory import make_session_store
from rtcstats_server.metadata.jobs_sqlite import SqliteJobQueue
from rtcstats_server.metrics import Metrics
from rtcstats_server.storage.factory import make_dump_store
from tests.services import session_stores, streams
from tests.services.collector import RunningCollector, run_collector, wait_until
from tests.services.ferretdb import FerretDB
from tests.services.upstream import Fault, Upstream, run_upstream

TOKEN = "test-token"
FAILED_CALL = "jitsi-chrome-standard-pc-failed.jsonl"


def settings(upstream: Upstream, **overrides: Any) -> dict[str, Any]:
    forwarder = {
        "endpoint": upstream.url,
        "token": TOKEN,
        "chunk_bytes": 16 * 1024,  # several chunks per fixture
        "timeout_s": 10.0,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        "poll_interval_s": 0.1,
        "lease_s": 5.0,
        **overrides,
    }
    return {"forwarders": {"rtcstats_com": forwarder}}


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with run_upstream(TOKEN) as running:
        yield running


async def replay_jitsi(
    collector: RunningCollector, fixtures: Path, name: str = FAILED_CALL, client: str = "fw-1"
) -> dict[str, Any]:
    stream = streams.jitsi_disk_dump(fixtures, name, client)
    async with collector.http.ws_connect(
        collector.ws_url + stream.path, protocols=(stream.subprotocol,)
    ) as ws:
        await ws.receive_json(timeout=5)  # the sn handshake
        for message in stream.messages:
            await ws.send_str(message)
        await ws.close(code=stream.close_code)
    return await collector.wait_for_record(
        lambda r: r["client_session_id"] == client and r["state"] == "stored"
    )


async def forwarded(
    collector: RunningCollector, session_id: str, states: tuple[str, ...] = ("uploaded", "failed")
) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def done() -> bool:
        found.update(await collector.get_json(f"/v1/sessions/{session_id}"))
        return found.get("forward_state") in states

    await wait_until(done, 20, f"session {session_id} forward_state in {states}")
    return found


async def metrics_text(collector: RunningCollector) -> str:
    async with collector.http.get(collector.base_url + "/metrics") as response:
        return await response.text()


async def test_jitsi_session_is_converted_uploaded_and_its_urls_recorded(
    tmp_path: Path, fixtures_dir: Path, upstream: Upstream
) -> None:
    async with run_collector(tmp_path / "data", settings(upstream)) as collector:
        record = await replay_jitsi(collector, fixtures_dir)
        done = await forwarded(collector, record["id"])
        stored = await collector.dump_text(record["id"])
        listed = {
            query: [
                s["id"] for s in (await collector.get_json(f"/v1/sessions?{query}"))["sessions"]
            ]
            for query in ("forward_state=uploaded", "has_embed_url=true", "has_embed_url=false")
        }
        metrics = await metrics_text(collector)
    (upload,) = upstream.uploads_of(record["id"])
    assert done["forward_state"] == "uploaded" and done["forward_attempts"] == 1
    assert done["rtcstats_id"] == upload.rtcstats_id
    assert done["rtcstats_url"] == f"https://rtcstats.example/dumps/{upload.rtcstats_id}"
    assert done["embed_url"] == f"https://rtcstats.example/embed/{upload.rtcstats_id}"
    assert done["embed_url_absent"] is False and done["forward_error"] is None
    assert listed == {
        "forward_state=uploaded": [record["id"]],
        "has_embed_url=true": [record["id"]],
        "has_embed_url=false": [],
    }
    chunks = [status for step, status in upstream.requests if step == "chunk"]
    assert len(chunks) == -(-len(upload.content) // (16 * 1024)) > 1
    # What arrived is the stored session in fileFormat 3: same events, same times.
    original = list(DumpReader([stored.encode()], strict=True))
    uploaded = DumpReader([upload.content], strict=True)
    assert uploaded.info.metadata["fileFormat"] == 3
    assert uploaded.info.metadata["convertedFrom"] == "3.1_STANDARD"
    # Less the page-level create the conversion adds (dumps/jsforms.py), said in its count.
    converted = [e for e in uploaded if e.method != "create" or e.pc_id is not None]
    assert [(e.timestamp, e.method, e.pc_id) for e in converted] == [
        (e.timestamp, e.method, e.pc_id) for e in original
    ]
    assert [len(e.stats) for e in converted] == [len(e.stats) for e in original]
    assert 'rtcstats_forward_uploads_total{forwarder="rtcstats_com",outcome="uploaded"} 1.0' in (
        metrics
    )
    assert "rtcstats_forward_upload_seconds_count" in metrics


async def test_rtcstats_js_session_goes_as_stored_and_no_embed_plan_is_recorded(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    stream = streams.captured(fixtures_dir, "rtcstats-js-2.4.0-loopback-call")
    async with (
        run_upstream(TOKEN, embed=False) as upstream,
        run_collector(tmp_path / "data", settings(upstream)) as collector,
    ):
        async with collector.http.ws_connect(
            collector.ws_url + stream.path, protocols=(stream.subprotocol,)
        ) as ws:
            for message in stream.messages:
                await ws.send_str(message)
        record = await collector.wait_for_record(lambda r: r["state"] == "stored")
        done = await forwarded(collector, record["id"])
        stored = await collector.dump_text(record["id"])
        without = await collector.get_json("/v1/sessions?has_embed_url=false")
    (upload,) = upstream.uploads_of(record["id"])
    assert upload.content == stored.encode()  # byte for byte: no conversion
    assert done["forward_state"] == "uploaded"
    assert done["embed_url"] is None and done["embed_url_absent"] is True
    assert [s["id"] for s in without["sessions"]] == [record["id"]]


RETRIED = {
    "500_on_a_chunk": Fault("chunk", chunk_index=1),
    "429_on_assemble": Fault("assemble", status=429, error="Slow down", error_code="rate_limit"),
    "dropped_connection": Fault("chunk", action="drop", chunk_index=0),
    "slow_assemble": Fault("assemble", action="slow", delay_s=3.0),
    "503_twice": Fault("chunk", status=503, error="Unavailable", error_code=None, times=2),
}


@pytest.mark.parametrize("name", list(RETRIED))
async def test_retryable_fault_ends_in_exactly_one_upload(
    tmp_path: Path, fixtures_dir: Path, upstream: Upstream, name: str
) -> None:
    fault = RETRIED[name]
    retries = fault.times  # the stand-in counts it down
    upstream.inject(fault)
    overrides = {"timeout_s": 1.0} if fault.action == "slow" else {}
    async with run_collector(tmp_path / "data", settings(upstream, **overrides)) as collector:
        record = await replay_jitsi(collector, fixtures_dir)
        done = await forwarded(collector, record["id"])
        metrics = await metrics_text(collector)
    assert len(upstream.uploads_of(record["id"])) == 1
    assert done["forward_state"] == "uploaded"
    assert done["forward_attempts"] == 1 + retries
    assert done["forward_error"] is None and done["rtcstats_id"]
    assert (
        f'rtcstats_forward_uploads_total{{forwarder="rtcstats_com",outcome="retried"}} '
        f"{float(retries)}" in metrics
    )
    # Only the assemble that timed out may have landed unseen (here it was cut).
    unconfirmed = 1.0 if name == "slow_assemble" else 0.0
    assert (
        f'rtcstats_forward_unconfirmed_total{{forwarder="rtcstats_com"}} {unconfirmed}' in metrics
    )
    if fault.action == "slow":
        assert upstream.abandoned == 1  # the timed-out assemble was cut, not committed


FINAL = {
    "402_no_credits": (
        Fault("assemble", status=402, error="No credits left", error_code="no_credits"),
        "no_credits",
    ),
    "415_parsing_issue": (
        Fault("assemble", status=415, error="Cannot parse", error_code="parsing_issue"),
        None,
    ),
    "413_too_large": (Fault("chunk", status=413, error="Too large", error_code="too_large"), None),
    "400_bad_request": (
        Fault("chunk", status=400, error="Bad chunk", error_code="bad_request"),
        None,
    ),
}


@pytest.mark.parametrize("name", list(FINAL))
async def test_final_fault_fails_the_job_with_the_upstream_reason(
    tmp_path: Path, fixtures_dir: Path, upstream: Upstream, name: str
) -> None:
    fault, alert = FINAL[name]
    upstream.inject(fault)
    async with run_collector(tmp_path / "data", settings(upstream)) as collector:
        record = await replay_jitsi(collector, fixtures_dir)
        done = await forwarded(collector, record["id"])
        metrics = await metrics_text(collector)
    assert upstream.assembled == []
    assert done["forward_state"] == "failed" and done["forward_attempts"] == 1
    assert (done["forward_error"], done["forward_error_code"]) == (fault.error, fault.error_code)
    assert done["forward_http_status"] == fault.status
    assert done["rtcstats_id"] is None
    if alert:
        assert f'rtcstats_forward_auth_alert{{forwarder="rtcstats_com",reason="{alert}"}} 1.0' in (
            metrics
        )


async def test_wrong_token_fails_at_once_and_raises_the_alert(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    async with (
        run_upstream("the-real-token") as upstream,
        run_collector(tmp_path / "data", settings(upstream)) as collector,
    ):
        record = await replay_jitsi(collector, fixtures_dir)
        done = await forwarded(collector, record["id"])
        metrics = await metrics_text(collector)
    assert upstream.requests == [("auth", 401)]  # no retry
    assert (done["forward_state"], done["forward_error_code"]) == ("failed", "unauthorized")
    assert 'rtcstats_forward_auth_alert{forwarder="rtcstats_com",reason="unauthorized"} 1.0' in (
        metrics
    )
    assert TOKEN not in metrics and "the-real-token" not in json.dumps(done)


async def test_collector_restarted_mid_upload_finishes_it_once(
    tmp_path: Path, fixtures_dir: Path, upstream: Upstream
) -> None:
    upstream.inject(Fault("assemble", action="hold"))
    data = tmp_path / "data"
    async with run_collector(data, settings(upstream)) as collector:
        record = await replay_jitsi(collector, fixtures_dir)
        await asyncio.wait_for(upstream.holding.wait(), 20)
        # stopped while the upstream holds the assemble call
    assert upstream.assembled == []
    await wait_until(lambda: upstream.abandoned == 1, 10, "the held assemble to be cut")
    async with run_collector(data, settings(upstream)) as restarted:
        done = await forwarded(restarted, record["id"])
    assert len(upstream.uploads_of(record["id"])) == 1
    assert done["forward_state"] == "uploaded" and done["forward_attempts"] == 2


async def test_lease_of_a_dead_process_expires_and_the_job_is_taken_over(
    tmp_path: Path, fixtures_dir: Path, upstream: Upstream
) -> None:
    data = tmp_path / "data"
    async with run_collector(data) as collector:  # no forwarding configured yet
        record = await replay_jitsi(collector, fixtures_dir)
    queue = SqliteJobQueue(data / "sessions.sqlite3")
    await queue.open()
    try:  # a process leased the job, then died without a word
        await queue.enqueue(record["id"], "rtcstats_com", time.time())
        dead = await queue.lease("rtcstats_com", "dead-node/0", time.time(), 1.5)
        assert dead is not None
        async with run_collector(data, settings(upstream)) as collector:
            job = await queue.get(record["id"], "rtcstats_com")
            assert job is not None and job.lease_owner == "dead-node/0"  # not taken while live
            done = await forwarded(collector, record["id"])
        job = await queue.get(record["id"], "rtcstats_com")
    finally:
        await queue.close()
    assert len(upstream.uploads_of(record["id"])) == 1
    assert done["forward_attempts"] == 2
    assert job is not None and job.state == "uploaded" and job.result is not None
    assert job.result["rtcstats_id"] == done["rtcstats_id"]


@pytest.mark.parametrize("queue", ["sqlite", "ferretdb"])
async def test_a_process_stalled_past_its_lease_does_not_upload_a_second_time(
    queue: str,
    tmp_path: Path,
    fixtures_dir: Path,
    upstream: Upstream,
    request: pytest.FixtureRequest,
) -> None:
    """Process A leases the job and stalls mid-upload (its first chunk held) past its
    lease; process B takes the job over and uploads it. When A resumes it must not
    assemble: before the fix it sent its remaining chunks and the assemble call, and
    the session went up twice (what the two collectors on FerretDB once did under
    load). Times are moved by hand, so no renewal runs while A is held."""
    with contextlib.ExitStack() as cleanup:
        stores: dict[str, Any] = {}
        if queue == "ferretdb":
            uri = request.getfixturevalue("ferretdb").uri
            collection = cleanup.enter_context(session_stores.mongo_collection(uri))
            stores["metadata"] = {
                "backend": "mongodb",
                "uri": uri,
                "database": session_stores.TEST_DATABASE,
                "collection": collection,
            }
        await _stalled_process(tmp_path, fixtures_dir, upstream, stores)


async def _stalled_process(
    tmp_path: Path, fixtures_dir: Path, upstream: Upstream, stores: dict[str, Any]
) -> None:
    data = tmp_path / "data"
    async with run_collector(data, stores) as collector:  # no forwarding configured yet
        record = await replay_jitsi(collector, fixtures_dir)
    tree = {
        **settings(upstream, lease_s=30.0),
        **stores,
        "server": {"data_dir": str(data)},
    }
    config = build_config(tree, environ={})
    records, dumps = make_session_store(config), make_dump_store(config)
    await records.open()
    await dumps.open()
    now = [time.time()]
    processes: list[tuple[Forwarding, Metrics]] = []
    for node in ("node-a", "node-b"):
        metrics = Metrics()
        forwarding = make_forwarding(config, records, dumps, metrics, node)
        assert forwarding is not None
        forwarding.clock = lambda: now[0]
        forwarding.spool_dir = data / f"forward-{node}"
        await forwarding.open()
        processes.append((forwarding, metrics))
    (a, a_metrics), (b, _) = processes
    try:
        assert await a.queue.enqueue(record["id"], a.name, now[0])
        upstream.inject(Fault("chunk", action="hold", chunk_index=0))
        stalled = asyncio.create_task(a.run_once())
        await asyncio.wait_for(upstream.holding.wait(), 20)
        now[0] += 31.0  # A's lease ran out while it was stalled
        assert await b.run_once()  # B takes the job over and uploads it
        upstream.release.set()
        assert await asyncio.wait_for(stalled, 20)
        job = await a.queue.get(record["id"], a.name)
        done = await records.get(record["id"])
    finally:
        for forwarding, _ in processes:
            await forwarding.stop()
        await dumps.close()
        await records.close()
    (upload,) = upstream.uploads_of(record["id"])
    assert job is not None and job.state == "uploaded" and job.attempts == 2
    assert job.lease_owner is None and job.result is not None
    assert job.result["rtcstats_id"] == upload.rtcstats_id
    assert done is not None and done["rtcstats_id"] == upload.rtcstats_id
    lost = a_metrics.forward_uploads.labels(a.name, "lease_lost")._value.get()
    duplicates = a_metrics.forward_uploads.labels(a.name, "duplicate")._value.get()
    unconfirmed = a_metrics.forward_unconfirmed.labels(a.name)._value.get()
    assert (lost, duplicates, unconfirmed) == (1.0, 0.0, 0.0)  # given up before assemble


async def test_api_resends_on_demand(
    tmp_path: Path, fixtures_dir: Path, upstream: Upstream
) -> None:
    async with run_collector(tmp_path / "data", settings(upstream)) as collector:
        record = await replay_jitsi(collector, fixtures_dir)
        first = await forwarded(collector, record["id"])
        url = f"{collector.base_url}/v1/sessions/{record['id']}/forward"
        async with collector.http.post(url) as response:
            assert response.status == 202
            assert await response.json() == {"id": record["id"], "forward_state": "pending"}
        await wait_until(lambda: len(upstream.uploads_of(record["id"])) == 2, 20, "re-upload")
        again = await forwarded(collector, record["id"])
        async with collector.http.post(
            collector.base_url + "/v1/sessions/" + "0" * 32 + "/forward"
        ) as missing:
            assert missing.status == 404
        bad = await collector.get_json("/v1/sessions?forward_state=sent", status=400)
    assert again["rtcstats_id"] != first["rtcstats_id"]
    assert again["rtcstats_id"] == upstream.uploads_of(record["id"])[1].rtcstats_id
    assert bad["error"] == "bad_filter"


async def test_without_a_token_nothing_is_forwarded(
    tmp_path: Path, fixtures_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="rtcstats_server"):
        async with run_collector(tmp_path / "data") as collector:
            record = await replay_jitsi(collector, fixtures_dir)
            async with collector.http.post(
                f"{collector.base_url}/v1/sessions/{record['id']}/forward"
            ) as response:
                assert response.status == 409
                assert (await response.json())["error"] == "forwarding_disabled"
    assert record.get("forward_state") is None
    off = [r for r in caplog.records if "forwarding to rtcstats.com is off" in r.getMessage()]
    assert len(off) == 1 and "token" in off[0].getMessage()


async def test_sampled_out_sessions_get_no_job(
    tmp_path: Path, fixtures_dir: Path, upstream: Upstream
) -> None:
    async with run_collector(tmp_path / "data", settings(upstream, sample_rate=0.0)) as collector:
        record = await replay_jitsi(collector, fixtures_dir)
        queue = SqliteJobQueue(collector.config.embedded_path)
        await queue.open()
        try:
            assert await queue.get(record["id"], "rtcstats_com") is None
        finally:
            await queue.close()
        record = await collector.get_json(f"/v1/sessions/{record['id']}")
    assert record["forward_state"] is None and upstream.requests == []


async def test_cli_forwards_failed_sessions_again(
    tmp_path: Path, fixtures_dir: Path, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    upstream.inject(Fault("assemble", status=402, error="No credits left", error_code="no_credits"))
    async with run_collector(data, settings(upstream)) as collector:
        record = await replay_jitsi(collector, fixtures_dir)
        assert (await forwarded(collector, record["id"]))["forward_state"] == "failed"
    config = tmp_path / "rtcstats.yaml"
    forwarder = settings(upstream)["forwarders"]["rtcstats_com"]
    del forwarder["token"]  # from the environment, as in production
    config.write_text(json.dumps({"server": {"data_dir": str(data)}, **settings(upstream)}))
    config.write_text(
        json.dumps({"server": {"data_dir": str(data)}, "forwarders": {"rtcstats_com": forwarder}})
    )
    monkeypatch.setenv("RTCSTATS_FORWARDERS__RTCSTATS_COM__TOKEN", TOKEN)
    argv = ["forward", "--config", str(config), "--since", "2000-01-01", "--state", "failed"]
    code = await asyncio.to_thread(main, argv)
    assert code == 0
    (upload,) = upstream.uploads_of(record["id"])
    async with run_collector(data) as collector:
        done = await collector.get_json(f"/v1/sessions/{record['id']}")
    assert done["forward_state"] == "uploaded" and done["rtcstats_id"] == upload.rtcstats_id


async def test_two_collectors_on_mongodb_share_the_queue(
    tmp_path: Path, fixtures_dir: Path, upstream: Upstream, ferretdb: FerretDB
) -> None:
    """Records and jobs in MongoDB (FerretDB here): each session uploaded once, by
    whichever of the two collectors leased it."""
    with session_stores.mongo_collection(ferretdb.uri) as collection:
        metadata = {
            "backend": "mongodb",
            "uri": ferretdb.uri,
            "database": session_stores.TEST_DATABASE,
            "collection": collection,
        }
        # Any collector may upload any session: dumps must be reachable from all of
        # them (one directory here, a bucket in production).
        storage = {"path": str(tmp_path / "dumps")}
        both = {**settings(upstream), "metadata": metadata, "storage": storage}
        async with (
            run_collector(tmp_path / "a", both) as a,
            run_collector(tmp_path / "b", both) as b,
        ):
            records = [
                await replay_jitsi(collector, fixtures_dir, client=f"fw-{n}")
                for n, collector in enumerate((a, b, a, b))
            ]
            done = [await forwarded(a, r["id"]) for r in records]
        client: MongoClient[dict[str, Any]] = MongoClient(ferretdb.uri)
        try:
            queue = client[session_stores.TEST_DATABASE][f"{collection}_jobs"]
            jobs = list(queue.find({"forwarder": {"$ne": ANALYSIS}}))  # the uploads
            client[session_stores.TEST_DATABASE].drop_collection(f"{collection}_jobs")
            client[session_stores.TEST_DATABASE].drop_collection(f"{collection}_jobs_claims")
        finally:
            client.close()
    for record, result in zip(records, done, strict=True):
        (upload,) = upstream.uploads_of(record["id"])
        assert result["forward_state"] == "uploaded"
        assert result["rtcstats_id"] == upload.rtcstats_id
    assert sorted(j["session_id"] for j in jobs) == sorted(r["id"] for r in records)
    assert {j["state"] for j in jobs} == {"uploaded"}


async def test_an_upload_is_recorded_through_a_short_database_outage(
    tmp_path: Path,
    fixtures_dir: Path,
    upstream: Upstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database goes away while the assemble call is out and comes back: the
    upload is recorded in the queue once it answers. It used to stay ``uploading``
    (the completion raised), to be taken over when its lease ran out and uploaded
    again."""
    with FerretDB(tmp_path / "ferretdb") as server:
        metadata = {
            "backend": "mongodb",
            "uri": server.uri,
            "database": session_stores.TEST_DATABASE,
            "collection": "sessions",
        }
        data = tmp_path / "data"
        async with run_collector(data, {"metadata": metadata}) as collector:
            record = await replay_jitsi(collector, fixtures_dir)
        tree = {
            **settings(upstream, lease_s=30.0),
            "metadata": metadata,
            "server": {"data_dir": str(data)},
        }
        config = build_config(tree, environ={})
        records, dumps = make_session_store(config), make_dump_store(config)
        await records.open()
        await dumps.open()
        forwarding = make_forwarding(config, records, dumps, Metrics(), "node-a")
        assert forwarding is not None
        await forwarding.open()
        try:
            assert await forwarding.queue.enqueue(record["id"], forwarding.name, time.time())
            upstream.inject(Fault("assemble", action="hold"))
            working = asyncio.create_task(forwarding.run_once())
            await asyncio.wait_for(upstream.holding.wait(), 20)
            await asyncio.to_thread(server.stop)
            upstream.release.set()
            await wait_until(
                lambda: working.done() or "recording it waits for the queue" in caplog.text,
                30,
                "the completion to wait for the database",
            )
            await asyncio.to_thread(server.start)
            assert await asyncio.wait_for(working, 30)
            job = await forwarding.queue.get(record["id"], forwarding.name)
        finally:
            await forwarding.stop()
            await dumps.close()
            await records.close()
    (upload,) = upstream.uploads_of(record["id"])
    assert job is not None and job.state == "uploaded" and job.lease_owner is None
    assert job.result is not None and job.result["rtcstats_id"] == upload.rtcstats_id
