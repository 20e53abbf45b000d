"""``serve --workers 2``: two processes on one port under one supervisor.

Both take connections (the kernel spreads them, SO_REUSEPORT); a worker killed with
SIGKILL is started again and its acknowledged entries are stored (recovered as after
any crash); SIGTERM drains every worker; ``/metrics`` on either answers for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.services import uploads
from tests.services.collector import wait_until
from tests.services.process import CollectorProcess

WORKERS = 2
WORKER_HEADER = "X-Rtcstats-Worker"


def entry(session: str, seq: int) -> str:
    data = json.dumps(["getstats", "PC_0", {"n": seq}, 1_700_000_000_000 + seq, seq])
    return json.dumps({"statsSessionId": session, "type": "stats-entry", "data": data})


def workers_of(server: CollectorProcess) -> list[int]:
    """The supervisor's children (its workers), by pid."""
    assert server.proc is not None
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sorted(int(child) for child in children)


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called ``name`` in an exposition, by its labels."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def metrics(http: aiohttp.ClientSession, server: CollectorProcess) -> str:
    async with http.get(server.base_url + "/metrics") as response:
        assert response.status == 200
        return await response.text()


async def all_answering(http: aiohttp.ClientSession, server: CollectorProcess) -> bool:
    """Every worker listens (and so serves its metrics to its siblings).

    A connection refused meanwhile is "not yet": the kernel may pick a worker whose
    listening socket is being closed (a worker restarted by its supervisor at start).
    """
    try:
        text = await metrics(http, server)
    except aiohttp.ClientConnectionError:
        return False
    answering = samples(text, "rtcstats_workers_answering")
    return answering == {(): float(WORKERS)}


async def records(http: aiohttp.ClientSession, server: CollectorProcess) -> list[dict[str, object]]:
    async with http.get(server.base_url + "/v1/sessions?limit=1000") as response:
        assert response.status == 200
        sessions: list[dict[str, object]] = (await response.json())["sessions"]
        return sessions


@pytest.fixture
async def supervised(tmp_path: Path) -> AsyncIterator[CollectorProcess]:
    async with supervised_with(tmp_path, {}) as server:
        yield server


@contextlib.asynccontextmanager
async def supervised_with(tmp_path: Path, env: dict[str, str]) -> AsyncIterator[CollectorProcess]:
    server = CollectorProcess(
        tmp_path / "data",
        env={
            "RTCSTATS_SERVER__WORKERS": str(WORKERS),
            "RTCSTATS_INGEST__ACK_EVERY_ENTRIES": "10",
            "RTCSTATS_SERVER__SHUTDOWN_GRACE_S": "10",
            **env,
        },
    )
    server.start()
    try:
        async with aiohttp.ClientSession() as http:
            await server.wait_healthy(http, timeout=60)
            await wait_until(lambda: all_answering(http, server), 60, what="both workers")
        yield server
    finally:
        server.kill()
        for pid in _leftover_workers(server):
            os.kill(pid, signal.SIGKILL)


def _leftover_workers(server: CollectorProcess) -> list[int]:
    """Workers still running after their supervisor was killed (should be none: they
    get SIGTERM with it), by their command line naming this data dir."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--worker-index" in argv and str(server.data_dir).encode() in argv:
            found.append(int(proc.name))
    return found


async def test_both_workers_take_connections_and_metrics_add_up(
    supervised: CollectorProcess,
) -> None:
    server = supervised
    sessions = 24
    seen: dict[str, int] = {}
    async with aiohttp.ClientSession() as http:
        for i in range(sessions):
            # a fresh TCP connection each: a new source port, a new pick of worker
            async with http.ws_connect(
                f"{server.ws_url}/room{i}", protocols=("rtcstats#5.0",)
            ) as ws:
                assert ws._response is not None
                worker = ws._response.headers[WORKER_HEADER]
                seen[worker] = seen.get(worker, 0) + 1
                await ws.send_str('[39,null,{"hardwareConcurrency":2},1795483241574]')
                await ws.send_str(json.dumps(["create", "PC_0", {}, 1795483241575]))
                await ws.close(code=1000)
        assert set(seen) == {"0", "1"}, seen  # 24 picks: both workers, all but surely

        async def all_stored() -> bool:
            stored = [r for r in await records(http, server) if r["state"] == "stored"]
            return len(stored) == sessions

        await wait_until(all_stored, 30, what="every session stored")
        nodes = {str(r["node_id"]) for r in await records(http, server)}
        assert len(nodes) == WORKERS  # each worker records under its own node id

        text = await metrics(http, server)
        assert samples(text, "rtcstats_connections_total") == {
            (("dialect", "rtcstats#5.0"),): float(sessions)
        }
        assert samples(text, "rtcstats_messages_received_total") == {
            (("dialect", "rtcstats#5.0"),): float(2 * sessions)
        }
        assert samples(text, "rtcstats_workers") == {(): float(WORKERS)}
        # a shared state is not added up: the store is up, once
        assert samples(text, "rtcstats_metadata_up") == {(): 1.0}
        # what runs is said once, not once per worker
        (build,) = samples(text, "rtcstats_build_info").items()
        assert build[1] == 1.0 and ("analysis", "pure") in build[0], build
    # the workers share one log stream: each line says whose it is
    log = server.log()
    assert "INFO [w0] rtcstats_server.http.app: rtcstats-collector" in log
    assert "INFO [w1] rtcstats_server.http.app: rtcstats-collector" in log
    # the supervisor says what each worker enforces of the host's limits
    assert "connection limits per worker (1/2 of limits.*" in log
    assert "10000 open, 128 per address, 10 new per address per s (burst 50)" in log


async def test_the_workers_hold_the_host_to_the_connection_limit(tmp_path: Path) -> None:
    """``limits.max_connections: 2`` with two workers: each takes one socket, so the
    host holds two at most (whole limits per worker let it hold four); the rest are
    refused with 503 and counted."""
    async with supervised_with(tmp_path, {"RTCSTATS_LIMITS__MAX_CONNECTIONS": "2"}) as server:
        async with aiohttp.ClientSession() as http:
            held: list[aiohttp.ClientWebSocketResponse] = []
            refused = 0
            for i in range(12):  # a new source port each: the kernel picks a worker
                try:
                    ws = await http.ws_connect(f"{server.ws_url}/r{i}", protocols=("rtcstats#5.0",))
                except aiohttp.WSServerHandshakeError as error:
                    assert error.status == 503
                    refused += 1
                else:
                    held.append(ws)
            assert 1 <= len(held) <= 2, len(held)
            assert refused == 12 - len(held)
            text = await metrics(http, server)
            assert samples(text, "rtcstats_connections_refused_total") == {
                (("reason", "server_full"),): float(refused)
            }
            for ws in held:
                await ws.close()


async def test_a_killed_worker_is_restarted_and_loses_nothing_acknowledged(
    supervised: CollectorProcess,
) -> None:
    server = supervised
    before = workers_of(server)
    assert len(before) == WORKERS
    session = "killed-worker-1"
    async with aiohttp.ClientSession() as http:
        url = f"{server.ws_url}/room?statsSessionId={session}&isReconnect=false"
        ws = await http.ws_connect(url, protocols=("3.1_STANDARD",))
        assert ws._response is not None
        index = int(ws._response.headers[WORKER_HEADER])
        assert (await ws.receive_json(timeout=10))["body"]["value"] == 0
        for seq in range(1, 51):
            await ws.send_str(entry(session, seq))
        acked = 0
        while acked < 50:  # an ack means: durable in the dump
            acked = (await ws.receive_json(timeout=10))["body"]["value"]
        for seq in range(51, 56):
            await ws.send_str(entry(session, seq))  # not acknowledged: may be lost

        # The worker's pid is the one whose data dir holds the live dump.
        live = server.data_dir / "workers" / str(index) / "live"
        assert list(live.glob("*.rtcstats.zst"))
        victim = next(pid for pid in before if _index_of(pid) == index)
        os.kill(victim, signal.SIGKILL)
        await ws.receive(timeout=10)  # the socket drops with its process
        await ws.close()

        async def replaced() -> bool:
            now = workers_of(server)
            return len(now) == WORKERS and victim not in now

        await wait_until(replaced, 30, what="the killed worker replaced")
        await wait_until(lambda: all_answering(http, server), 60, what="both workers again")

        async def recovered() -> dict[str, object] | None:
            for record in await records(http, server):
                if record["client_session_id"] == session and record["state"] == "stored":
                    return record
            return None

        async def is_recovered() -> bool:
            return await recovered() is not None

        await wait_until(is_recovered, 30, what="the session recovered")
        record = await recovered()
        assert record is not None and record["end_reason"] == "recovered"
        async with http.get(f"{server.base_url}/v1/sessions/{record['id']}/dump") as response:
            dump = (await response.text()).splitlines()
        seqs = [json.loads(line)[4] for line in dump[2:-1]]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 50
    assert f"worker {index} restarted" in server.log()


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _index_of(pid: int) -> int:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return int(argv[argv.index(b"--worker-index") + 1])


async def test_sigterm_drains_every_worker(supervised: CollectorProcess) -> None:
    server = supervised
    pids = workers_of(server)
    sessions = 12
    async with aiohttp.ClientSession() as http:
        sockets = []
        seen = set()
        for i in range(sessions):
            ws = await http.ws_connect(f"{server.ws_url}/t{i}", protocols=("rtcstats#5.0",))
            assert ws._response is not None
            seen.add(ws._response.headers[WORKER_HEADER])
            await ws.send_str('[39,null,{"hardwareConcurrency":2},1795483241574]')
            sockets.append(ws)

        async def all_recorded() -> bool:
            return len(await records(http, server)) == sessions

        await wait_until(all_recorded, 30, what="the records")

        async def close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
            await ws.receive(timeout=30)
            return ws.close_code

        closing = [asyncio.create_task(close_code(ws)) for ws in sockets]
        code, _ = await server.terminate(timeout=40)
        assert code == 0, server.log()
        assert await asyncio.gather(*closing) == [1001] * sessions
    assert not [pid for pid in pids if await asyncio.to_thread(_alive, pid)]
    assert seen == {"0", "1"}

    # One process on the same data dir: every session was stored by the drain.
    single = CollectorProcess(server.data_dir)
    single.start()
    try:
        async with aiohttp.ClientSession() as http:
            await single.wait_healthy(http, timeout=60)
            stored = await records(http, single)
        assert len(stored) == sessions
        assert {r["end_reason"] for r in stored} == {"shutdown"}
        assert {r["state"] for r in stored} == {"stored"}
    finally:
        single.kill()


async def test_a_client_resuming_on_any_worker_keeps_one_session(
    supervised: CollectorProcess,
) -> None:
    """A 3.1 client that drops and reconnects 12 times lands on both workers; the
    worker without its session relays it to the one with it: one record, one dump,
    every seq once."""
    server = supervised
    session = "resumes-across-workers"
    connections = 12
    sent = acked = 0
    served_by: list[int] = []
    async with aiohttp.ClientSession() as http:
        for n in range(connections):
            flag = "true" if n else "false"
            url = f"{server.ws_url}/room?statsSessionId={session}&isReconnect={flag}"
            ws = await http.ws_connect(url, protocols=("3.1_STANDARD",))
            assert ws._response is not None
            served_by.append(int(ws._response.headers[WORKER_HEADER]))
            hello = (await ws.receive_json(timeout=10))["body"]
            assert hello["state"] == "initial" and hello["value"] >= acked
            # the client resends everything not acknowledged to it: some twice
            for seq in range(acked + 1, sent + 26):
                await ws.send_str(entry(session, seq))
            sent += 25
            while acked < sent // 10 * 10:
                acked = (await ws.receive_json(timeout=10))["body"]["value"]
            await ws.close(code=3001 if n == connections - 1 else 4000)

        async def one_stored() -> bool:
            mine = [r for r in await records(http, server) if r["client_session_id"] == session]
            return len(mine) == 1 and mine[0]["state"] == "stored"

        await wait_until(one_stored, 30, what="one stored session")
        (record,) = await records(http, server)
        assert record["connections"] == connections
        assert record["end_reason"] == "conference_left"
        async with http.get(f"{server.base_url}/v1/sessions/{record['id']}/dump") as response:
            dump = (await response.text()).splitlines()
        assert [json.loads(line)[4] for line in dump[2:-1]] == list(range(1, sent + 1))
        relayed = sum(1 for worker in served_by if worker != served_by[0])
        assert 0 < relayed < connections, served_by  # 12 picks: both, all but surely
        text = await metrics(http, server)
        assert samples(text, "rtcstats_resumes_relayed_total") == {(): float(relayed)}
        assert samples(text, "rtcstats_sessions_resumed_total") == {(): float(connections - 1)}
    assert "Traceback" not in server.log(), server.log()


async def test_a_file_uploaded_in_chunks_over_many_connections_is_one_session(
    supervised: CollectorProcess, fixtures_dir: Path
) -> None:
    """/v1.0/upload chunks reach either worker (a connection each); the file's chunks
    and its assembly meet in one worker (the others relay to it): one session."""
    server = supervised
    name = "jitsi-google-standard-stats-sfu.jsonl"
    body = await asyncio.to_thread((fixtures_dir / "real" / name).read_bytes)
    seen: set[str] = set()

    async def note(
        _: aiohttp.ClientSession, __: object, params: aiohttp.TraceRequestEndParams
    ) -> None:
        seen.add(params.response.headers[WORKER_HEADER])

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(note)
    # a fresh connection per request: each may reach either worker
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as http:
        status, answer = await uploads.post_chunks(http, server.base_url, body, name, size=8 * 1024)
        assert status == 200 and answer["success"] is True, answer
        session_id = answer["rtcstatsId"]
        assert len(body) // (8 * 1024) >= 10 and seen == {"0", "1"}, seen
        async with http.get(f"{server.base_url}/v1/sessions/{session_id}") as response:
            record = await response.json()
        assert record["state"] == "stored" and record["dialect"] == "upload"
        assert record["upload_layout"] == "jitsi-disk"
        assert len(await records(http, server)) == 1
