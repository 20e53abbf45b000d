"""A 3.1 client's acknowledgements: each one only for entries already in the dump file.

A burst of entries reaches the session in a few socket reads; every
``ack_every_entries``-th entry's frame is written in the same step that handled it (no
task, the socket is not paused), so the ``sn`` that follows must find the frame on
disk, and the acks must come in order, one per threshold.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from rtcstats_server.dumps.codecs import dump_lines
from tests.services.collector import run_collector

SID = "acks-durable-1"
ENTRIES = 350
EVERY = 100


def entry(seq: int) -> str:
    data = json.dumps(["getstats", "PC_0", {"n": seq}, 1_700_000_000_000 + seq, seq])
    return json.dumps({"statsSessionId": SID, "type": "stats-entry", "data": data})


def seqs_on_disk(path: Path) -> list[int]:
    """The seqs of the entries in a live dump file (past its two header lines)."""
    lines = [json.loads(line) for line in dump_lines([path.read_bytes()]) if line[:1] == b"["]
    return [line[4] for line in lines if len(line) > 4 and isinstance(line[4], int)]


async def test_every_ack_of_a_burst_follows_its_frame_on_disk(tmp_path: Path) -> None:
    settings = {"ingest": {"ack_every_entries": EVERY}, "dumps": {"flush_interval_s": 30}}
    async with run_collector(tmp_path / "data", settings) as collector:
        url = f"{collector.ws_url}/room?statsSessionId={SID}&isReconnect=false"
        async with collector.http.ws_connect(url, protocols=("3.1_STANDARD",)) as ws:
            assert (await ws.receive_json(timeout=5))["body"] == {"value": 0, "state": "initial"}
            for seq in range(1, ENTRIES + 1):
                await ws.send_str(entry(seq))
            acks = []
            while len(acks) < ENTRIES // EVERY:
                message = await ws.receive(timeout=10)
                assert message.type == aiohttp.WSMsgType.TEXT, message
                body = json.loads(message.data)["body"]
                assert body["state"] == "ack"
                acks.append(body["value"])
                (session,) = collector.manager.sessions.values()
                on_disk = seqs_on_disk(session.writer.path)
                assert on_disk == list(range(1, len(on_disk) + 1))
                assert len(on_disk) >= body["value"]  # durable before it was acknowledged
            assert acks == [EVERY * n for n in range(1, ENTRIES // EVERY + 1)]
            await ws.close(code=3001)
        record = await collector.wait_for_record(lambda r: r["state"] == "stored")
        lines = (await collector.dump_text(record["id"])).splitlines()[2:-1]  # no close
        assert [json.loads(line)[4] for line in lines] == list(range(1, ENTRIES + 1))
