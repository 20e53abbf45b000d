"""A collector SIGKILLed mid-stream behind HAProxy loses nothing it acknowledged: its
clients resume on the others, and once it restarts on its own data dir its segments
join their sessions, each stored whole (seqs once each)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp

from tests.ops.cluster.cluster import Client31, cluster_settings, settings_env
from tests.services.collector import RunningCollector
from tests.services.ferretdb import FerretDB
from tests.services.haproxy import HAProxy
from tests.services.process import CollectorProcess
from tests.services.seaweedfs import SeaweedFS

CLIENTS = 6
PER_PHASE = 40


async def test_sigkilled_collector_loses_nothing_it_acknowledged(
    tmp_path: Path, ferretdb: FerretDB, collection: str, bucket: SeaweedFS, shared_prefix: str
) -> None:
    processes = []
    for n in range(1, 4):
        tree = cluster_settings(
            f"node-{n}", ferretdb.uri, collection, bucket, shared_prefix, resume_grace_s=3.0
        )
        tree["privacy"] = {"obfuscate_ip_addresses": False}
        processes.append(CollectorProcess(tmp_path / f"node-{n}", env=settings_env(tree)))
    balancer = HAProxy(tmp_path / "haproxy", [p.port for p in processes])
    async with aiohttp.ClientSession() as http:
        try:
            for process in processes:
                process.start()
            for process in processes:
                await process.wait_healthy(http, timeout=60)
            await asyncio.to_thread(balancer.start)
            clients = [Client31(http, balancer.ws_url, f"killed-{n}") for n in range(CLIENTS)]
            for client in clients:  # round robin: two clients on each collector
                await client.connect()
            await asyncio.gather(*(c.send(PER_PHASE) for c in clients))
            await asyncio.gather(*(c.wait_acked(PER_PHASE) for c in clients))

            victim = processes[0]
            victim.kill()  # SIGKILL: no drain, no segment end
            deadline = time.monotonic() + 20
            while sum(c.cut_off for c in clients) < CLIENTS // 3:
                assert time.monotonic() < deadline, "the victim's clients never saw it go"
                await asyncio.sleep(0.05)
            cut = [c for c in clients if c.cut_off]
            for client in cut:  # they come back through the balancer, on the others
                await client.connect()
            await asyncio.gather(*(c.send(PER_PHASE) for c in clients))
            await asyncio.gather(*(c.wait_acked(2 * PER_PHASE) for c in clients))
            for client in clients:
                await client.leave()

            victim.start()  # same data dir, same node id: its segments recover
            await victim.wait_healthy(http, timeout=60)
            api = RunningCollector(app=None, config=None, port=processes[1].port, http=http)  # type: ignore[arg-type]
            deadline = time.monotonic() + 90
            while True:
                page = await api.get_json("/v1/sessions?limit=100")
                records = page["sessions"]
                if len(records) == CLIENTS and all(r["state"] == "stored" for r in records):
                    break
                assert time.monotonic() < deadline, [
                    (r["client_session_id"], r["state"]) for r in records
                ]
                await asyncio.sleep(0.2)
            assert sorted(r["client_session_id"] for r in records) == sorted(c.sid for c in clients)
            expected = list(range(1, 2 * PER_PHASE + 1))
            recovered = 0
            for record in records:
                lines = (await api.dump_text(record["id"])).splitlines()
                seqs = [json.loads(line)[4] for line in lines[2:-1]]
                assert seqs == expected, (record["client_session_id"], seqs)
                recovered += record["client_session_id"] in {c.sid for c in cut}
            assert recovered == len(cut) >= 1
        finally:
            balancer.stop()
            for process in processes:
                process.kill()
