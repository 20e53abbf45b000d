"""SIGKILL mid-stream: what was acknowledged survives, and the session is finished
as ``recovered`` at the next start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from rtcstats_server.dumps.codecs import compress_frame, iter_frames
from rtcstats_server.metadata.embedded import EmbeddedSessionStore
from rtcstats_server.storage.base import dump_key
from rtcstats_server.storage.local import LocalDumpStore
from tests.services.collector import free_port, run_collector, wait_until

SID = "crash-test-1"


def entry(seq: int) -> str:
    data = json.dumps(["getstats", "PC_0", {"n": seq}, 1_700_000_000_000 + seq, seq])
    return json.dumps({"statsSessionId": SID, "type": "stats-entry", "data": data})


class ServerProcess:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "RTCSTATS_DUMPS__FLUSH_INTERVAL_S": "0.2"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rtcstats_server",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
            ],
            env=env,
        )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "data", free_port())
    yield process
    process.kill()


async def healthy(http: aiohttp.ClientSession, port: int) -> bool:
    try:
        async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def test_sigkill_loses_at_most_the_unflushed_tail(server: ServerProcess) -> None:
    server.start()
    async with aiohttp.ClientSession() as http:
        await wait_until(lambda: healthy(http, server.port), what="server up")
        url = f"ws://127.0.0.1:{server.port}/room?statsSessionId={SID}&isReconnect=false"
        ws = await http.ws_connect(url, protocols=("3.1_STANDARD",))
        assert (await ws.receive_json(timeout=5))["body"]["value"] == 0
        for seq in range(1, 61):
            await ws.send_str(entry(seq))
        acked = 0
        while acked < 60:  # an ack means: durable in the dump
            acked = (await ws.receive_json(timeout=5))["body"]["value"]
        for seq in range(61, 71):
            await ws.send_str(entry(seq))
        server.kill()

        live = list((server.data_dir / "live").glob("*.rtcstats.zst"))
        assert len(live) == 1
        content = b"".join(frame for frame, _ in iter_frames([live[0].read_bytes()]))
        lines = content.decode().splitlines()
        assert lines[0] == "RTCStatsDump"
        seqs = [json.loads(line)[4] for line in lines[2:]]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 60

        # A torn tail (a crash mid-write) must not stop recovery either.
        with live[0].open("ab") as handle:
            handle.write(b"\x28\xb5\x2f\xfd\x00torn")

        server.start()
        await wait_until(lambda: healthy(http, server.port), what="server back")
        base = f"http://127.0.0.1:{server.port}"
        async with http.get(base + "/v1/sessions") as response:
            (record,) = (await response.json())["sessions"]
        assert record["state"] == "stored" and record["end_reason"] == "recovered"
        assert record["close_code"] == 1006 and record["client_session_id"] == SID
        async with http.get(f"{base}/v1/sessions/{record['id']}/dump") as response:
            dump = (await response.text()).splitlines()
        assert [json.loads(line)[4] for line in dump[2:-1]] == seqs
        assert json.loads(dump[-1])[:3] == ["close", None, 1006]
        assert record["messages"] == len(seqs)
        assert not list((server.data_dir / "live").glob("*.zst"))
        assert server.terminate() == 0


async def test_sigterm_drains_and_exits_zero(server: ServerProcess) -> None:
    server.start()
    async with aiohttp.ClientSession() as http:
        await wait_until(lambda: healthy(http, server.port), what="server up")
        sockets = []
        for i in range(5):
            ws = await http.ws_connect(
                f"ws://127.0.0.1:{server.port}/t{i}", protocols=("rtcstats#5.0",)
            )
            await ws.send_str('[39,null,{"hardwareConcurrency":2},1795483241574]')
            sockets.append(ws)
        await wait_until(lambda: all(not ws.closed for ws in sockets))
        started = time.monotonic()

        # the records exist before we stop (so the drain has something to finish)
        async def five_records() -> bool:
            async with http.get(f"http://127.0.0.1:{server.port}/v1/sessions") as response:
                return len((await response.json())["sessions"]) == 5

        await wait_until(five_records, what="records")
        assert server.terminate() == 0
        assert time.monotonic() - started < 10
        codes = []
        for ws in sockets:
            await ws.receive(timeout=5)
            codes.append(ws.close_code)
        assert codes == [1001] * 5
    server.start()
    async with aiohttp.ClientSession() as http:
        await wait_until(lambda: healthy(http, server.port), what="server back")
        async with http.get(f"http://127.0.0.1:{server.port}/v1/sessions") as response:
            records = (await response.json())["sessions"]
    assert sorted(r["end_reason"] for r in records) == ["shutdown"] * 5


async def test_a_stored_dump_whose_record_stayed_live_is_linked(tmp_path: Path) -> None:
    """A finish that stored the dump and then died (or failed) before its record
    write: the record says ``streaming``, the live file is gone. Recovery must find the
    dump where it was stored (the report: ``recovered`` with ``dump_key: null``)."""
    data = tmp_path / "data"
    started = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    orphan, lost = "a" * 32, "b" * 32
    records = EmbeddedSessionStore(data / "sessions.sqlite3")
    await records.open()
    for session_id in (orphan, lost):
        await records.upsert(
            session_id,
            {"started_at": started, "state": "streaming", "node_id": "node-1", "url": "/x"},
        )
    await records.close()
    lines = [b"RTCStatsDump", b'{"clientProtocol":"2.0"}', b'["create","PC_0",{},1]']
    source = tmp_path / "orphan.zst"
    source.write_bytes(compress_frame(b"\n".join(lines) + b"\n", 3))
    stored = await LocalDumpStore(data / "dumps").put(dump_key(orphan, started), source)

    async with run_collector(data, {"server": {"node_id": "node-1"}}) as collector:
        linked = await collector.get_json(f"/v1/sessions/{orphan}")
        assert linked["state"] == "stored" and linked["end_reason"] == "recovered"
        assert linked["dump_key"] == stored.key and linked["dump_bytes"] == stored.size
        assert (await collector.dump_text(orphan)).splitlines()[2] == '["create","PC_0",{},1]'
        nothing = await collector.get_json(f"/v1/sessions/{lost}")
        assert nothing["state"] == "stored" and nothing["dump_key"] is None
