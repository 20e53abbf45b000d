"""A full disk under live sessions: nothing acknowledged is lost, the dump written so
far still decodes, and the client (told 1011, which is not final) resends the rest once
there is room again. The disk is a real 256 KiB tmpfs mounted over the live directory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.services.collector import RunningCollector, run_collector, wait_until

SID = "full-disk-1"
ENTRIES = 120


@contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``path`` (skips where mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def small_live_dir(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "data" / "live", "256k") as live:
        yield live


@pytest.fixture
def small_data_dir(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "data", "8m") as data:
        yield data


def fill(directory: Path) -> Path:
    """Write a file until the disk has no room left; return it (unlink it for room)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (1 << 20, 64 << 10, 4 << 10, 512):
            block = b"\0" * chunk
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, block)
    finally:
        os.close(fd)
    return filler


async def ready(collector: RunningCollector) -> bool:
    async with collector.http.get(collector.base_url + "/readyz") as response:
        return response.status == 200


def entry(seq: int, payload: str, sid: str = SID) -> str:
    data = json.dumps(["getstats", "PC_0", {"noise": payload}, 1_700_000_000_000 + seq, seq])
    return json.dumps({"statsSessionId": sid, "type": "stats-entry", "data": data})


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


async def readiness(collector: RunningCollector) -> tuple[int, dict[str, Any]]:
    async with collector.http.get(collector.base_url + "/readyz") as response:
        return response.status, await response.json()


class Client:
    """A jitsi client: streams entries, remembers what the server acknowledged."""

    def __init__(self, collector: RunningCollector, sid: str) -> None:
        self.collector = collector
        self.sid = sid
        self.acked = 0
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def open(self) -> None:
        target = f"{self.collector.ws_url}/room?statsSessionId={self.sid}&isReconnect=false"
        self.ws = await self.collector.http.ws_connect(target, protocols=("3.1_STANDARD",))
        assert (await self.ws.receive_json(timeout=5))["body"]["value"] == 0

    async def send_acked(self, seqs: range) -> None:
        assert self.ws is not None
        for seq in seqs:
            await self.ws.send_str(entry(seq, "small", self.sid))
        while self.acked < seqs[-1]:
            self.acked = (await self.ws.receive_json(timeout=5))["body"]["value"]

    async def stream_until_closed(self, first: int) -> int:
        """Send incompressible entries until the server closes; its close code."""
        assert self.ws is not None
        ws = self.ws
        for seq in range(first, first + 200):
            try:
                await ws.send_str(entry(seq, secrets.token_hex(1024), self.sid))
            except ConnectionError:
                break
            await asyncio.sleep(0)  # let the server's close frame in
            if ws.closed:
                break
        while (msg := await ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
            self.acked = max(self.acked, json.loads(msg.data)["body"]["value"])
        return ws.close_code or 0


def seqs_of(dump: str) -> list[int]:
    return [json.loads(line)[4] for line in dump.splitlines()[2:] if line.startswith('["getstats"')]


async def test_a_full_data_dir_refuses_new_sessions_and_loses_no_dump(
    small_data_dir: Path,
) -> None:
    """The data dir (dumps, live dumps, the embedded store) on an 8 MiB tmpfs, filled to
    the last byte: /readyz says 503, upgrades get 503 before the socket opens, a session
    that cannot write ends with 1011, and its record, unwritable meanwhile, is written
    once there is room again: by a retry while the collector runs, by crash recovery
    after a restart."""
    settings = {
        "ingest": {"ack_every_entries": 5},
        "dumps": {"flush_interval_s": 0.2},
        "storage": {"min_free_bytes": 1 << 20},
        "metadata": {"retry_interval_s": 0.2},
    }
    async with run_collector(small_data_dir, settings) as collector:
        first, second = Client(collector, "full-a"), Client(collector, "full-b")
        for client in (first, second):
            await client.open()
            await client.send_acked(range(1, 11))
        assert (await readiness(collector))[0] == 200

        filler = fill(small_data_dir)

        async def unready() -> bool:
            status, body = await readiness(collector)
            return status == 503 and "disk" in body["problems"]

        await wait_until(unready, what="/readyz 503 on a full disk")
        assert await collector.upgrade_status("/room?statsSessionId=new&isReconnect=false") == 503
        assert await first.stream_until_closed(11) == 1011
        manager = collector.manager
        await wait_until(lambda: len(manager.unrecorded) == 1, what="a record that waits")
        (waiting,) = manager.unrecorded.values()
        record = await collector.get_json(f"/v1/sessions/{waiting.id}")
        assert record["state"] == "streaming"  # the store cannot take a byte either

        await asyncio.to_thread(filler.unlink)  # room again: the sweeper writes it
        stored = await collector.wait_for_record(
            lambda r: r["client_session_id"] == "full-a" and r["state"] == "stored"
        )
        assert stored["end_reason"] == "dump_error" and stored["dump_key"]
        seqs = seqs_of(await collector.dump_text(stored["id"]))
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= first.acked >= 10
        await wait_until(lambda: readiness_ok(collector), what="/readyz 200 with room")

        # Again, and this time the collector stops before there is room.
        filler = fill(small_data_dir)
        assert await second.stream_until_closed(11) == 1011
        await wait_until(lambda: len(manager.unrecorded) == 1, what="a record that waits")
        text = await collector.metrics_text()
        assert 'rtcstats_connections_refused_total{reason="disk_full"} 1.0' in text
        assert 'rtcstats_store_errors_total{backend="embedded"}' in text

    await asyncio.to_thread(filler.unlink)
    async with run_collector(small_data_dir, settings) as collector:
        records = (await collector.get_json("/v1/sessions"))["sessions"]
        assert {r["client_session_id"] for r in records} == {"full-a", "full-b"}
        assert all(r["state"] == "stored" and r["dump_key"] for r in records), records
        (recovered,) = [r for r in records if r["client_session_id"] == "full-b"]
        assert recovered["end_reason"] == "recovered"
        seqs = seqs_of(await collector.dump_text(recovered["id"]))
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= second.acked >= 10


async def readiness_ok(collector: RunningCollector) -> bool:
    return (await readiness(collector))[0] == 200
