"""A full disk under live sessions: nothing acknowledged is lost, the dump written so
far still decodes, and the client (told 1011, which is not final) resends the rest once
there is room again. The disk is a real 256 KiB tmpfs mounted over the live directory."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.services.collector import RunningCollector, run_collector, wait_until

SID = "full-disk-1"
ENTRIES = 120


@pytest.fixture
def small_live_dir(tmp_path: Path) -> Iterator[Path]:
    live = tmp_path / "data" / "live"
    live.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(live)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield live
    finally:
        subprocess.run(["umount", "-l", str(live)], check=False)


async def ready(collector: RunningCollector) -> bool:
    async with collector.http.get(collector.base_url + "/readyz") as response:
        return response.status == 200


def entry(seq: int, payload: str) -> str:
    data = json.dumps(["getstats", "PC_0", {"noise": payload}, 1_700_000_000_000 + seq, seq])
    return json.dumps({"statsSessionId": SID, "type": "stats-entry", "data": data})


async def test_full_disk_loses_nothing_acknowledged(small_live_dir: Path) -> None:
    payloads = {seq: secrets.token_hex(400) for seq in range(1, ENTRIES + 1)}  # incompressible
    free = os.statvfs(small_live_dir).f_bavail * os.statvfs(small_live_dir).f_frsize
    filler = small_live_dir / "filler"
    filler.write_bytes(b"\0" * max(0, free - 12 * 1024))  # leaves room for ~12 entries

    settings = {
        "ingest": {"ack_every_entries": 5},
        "dumps": {"flush_interval_s": 0.2},
        "storage": {"min_free_bytes": 4096},  # the 12 KiB left still take a session
    }
    async with run_collector(small_live_dir.parent, settings) as collector:
        url = f"{collector.ws_url}/room?statsSessionId={SID}&isReconnect="
        acked = 0
        async with collector.http.ws_connect(url + "false", protocols=("3.1_STANDARD",)) as ws:
            assert (await ws.receive_json(timeout=5))["body"]["value"] == 0
            for seq in range(1, ENTRIES + 1):
                if ws.closed:
                    break
                try:
                    await ws.send_str(entry(seq, payloads[seq]))
                except ConnectionError:
                    break
            while (msg := await ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
                acked = max(acked, json.loads(msg.data)["body"]["value"])
            assert ws.close_code == 1011  # not 3001/3002: a jitsi client comes back
        first = await collector.wait_for_record(lambda r: r["state"] == "stored")
        assert first["end_reason"] == "dump_error"
        assert 0 < acked < ENTRIES
        stored = [
            json.loads(x)[4] for x in (await collector.dump_text(first["id"])).splitlines()[2:]
        ]
        assert stored == list(range(1, len(stored) + 1))
        assert len(stored) >= acked  # everything acknowledged is in the dump

        filler.unlink()  # room again: the client reconnects and resends what it holds
        await wait_until(lambda: ready(collector), what="/readyz ready once there is room")
        async with collector.http.ws_connect(url + "true", protocols=("3.1_STANDARD",)) as ws:
            assert (await ws.receive_json(timeout=5))["body"]["value"] == 0  # a new session
            for seq in range(acked + 1, ENTRIES + 1):
                await ws.send_str(entry(seq, payloads[seq]))
            await ws.close(code=3001)
        second = await collector.wait_for_record(
            lambda r: r["state"] == "stored" and r["id"] != first["id"]
        )
        lines = (await collector.dump_text(second["id"])).splitlines()[2:-1]
        resent = [json.loads(x)[4] for x in lines]
        assert resent == list(range(acked + 1, ENTRIES + 1))
        assert set(stored) | set(resent) == set(range(1, ENTRIES + 1))
        async with collector.http.get(collector.base_url + "/metrics") as response:
            assert (
                'rtcstats_messages_dropped_total{reason="dump_error"} 1.0' in await response.text()
            )
