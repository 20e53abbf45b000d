"""Our websocket framing against a live collector, over raw sockets where a client
library would not break the rules: the front door's limits, the close handshake,
pings, fragments, early data, compression, and HTTP on the same port."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from rtcstats_server.compiled import is_compiled
from tests.ingest.test_frames import client_frame
from tests.services.collector import RunningCollector, run_collector


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[RunningCollector]:
    settings = {
        "limits": {"handshake_timeout_s": 1.0},
        "ingest": {"permessage_deflate": True, "max_message_bytes": 65536},
    }
    async with run_collector(tmp_path / "data", settings) as running:
        yield running


def upgrade_head(path: str, protocol: str = "2.0", extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {protocol}\r\n{extra}\r\n"
    ).encode()


async def open_raw(
    collector: RunningCollector, head: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", collector.port)
    writer.write(head)
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return reader, writer, answer


async def server_frames(reader: asyncio.StreamReader) -> list[tuple[int, bytes]]:
    """Frames until the server closes the connection."""
    frames = []
    while True:
        try:
            first, second = await asyncio.wait_for(reader.readexactly(2), 15)
        except asyncio.IncompleteReadError:
            return frames
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await reader.readexactly(8), "big")
        frames.append((first & 0x0F, await reader.readexactly(length)))


def lines_of(dump: str) -> list[str]:
    return dump.splitlines()[2:-1]


async def stored_lines(collector: RunningCollector, url: str) -> list[str]:
    record = await collector.wait_for_record(lambda r: r["url"] == url and r["state"] == "stored")
    return lines_of(await collector.dump_text(record["id"]))


async def test_early_data_fragments_and_pings_are_read_and_answered(
    live: RunningCollector,
) -> None:
    """A client that sends its first message with the upgrade (before our 101), a
    fragmented message, and a ping in between: all stored in order, the ping answered."""
    first = '["create","PC_0",{},1]'
    second = '["getstats","PC_0",{"a":1},2]'
    reader, writer, answer = await open_raw(
        live, upgrade_head("/early") + client_frame(1, first.encode())
    )
    assert answer.startswith(b"HTTP/1.1 101 ")
    writer.write(client_frame(1, second[:10].encode(), fin=False))
    writer.write(client_frame(0x9, b"are you there"))
    writer.write(client_frame(0, second[10:].encode()))
    writer.write(client_frame(0x8, (1000).to_bytes(2, "big")))
    frames = await server_frames(reader)
    writer.close()
    assert frames[0] == (0xA, b"are you there")
    assert frames[-1][0] == 0x8 and frames[-1][1][:2] == (1000).to_bytes(2, "big")
    assert frames[-1][1][2:].startswith(b"session ")
    assert await stored_lines(live, "/early") == [first, second]


@pytest.mark.parametrize(
    ("frame", "code", "reason"),
    [
        (client_frame(1, b'["create","PC_0",{},1]', masked=False), 1002, "protocol_error"),
        (client_frame(1, b"x", rsv=0x20), 1002, "protocol_error"),
        (client_frame(1, b"\xc3\x28"), 1007, "bad_messages"),
        (client_frame(0x8, (1004).to_bytes(2, "big")), 1002, "protocol_error"),
    ],
)
async def test_protocol_errors_end_the_session_with_their_code(
    live: RunningCollector, frame: bytes, code: int, reason: str
) -> None:
    url = f"/broken-{code}-{os.urandom(3).hex()}"
    reader, writer, _ = await open_raw(live, upgrade_head(url))
    writer.write(client_frame(1, b'["create","PC_0",{},1]') + frame)
    frames = await server_frames(reader)
    writer.close()
    assert frames[-1][0] == 0x8
    assert int.from_bytes(frames[-1][1][:2], "big") == code
    record = await live.wait_for_record(lambda r: r["url"] == url and r["state"] == "stored")
    assert (record["end_reason"], record["close_code"]) == (reason, code)


async def test_a_head_that_never_ends_is_cut_and_a_huge_one_refused(
    live: RunningCollector,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and then nothing (slowloris)
    assert await asyncio.wait_for(reader.read(), 10) == b""  # cut after handshake_timeout_s
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    writer.write(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert b" 400 Bad Request" in answer.split(b"\r\n")[0]  # aiohttp: its field limit
    assert (await live.get_json("/healthz"))["status"] == "ok"


async def test_compressed_messages_and_a_deflate_bomb(live: RunningCollector) -> None:
    """permessage-deflate as a real client negotiates it (aiohttp's), and a bomb: a
    few KB that inflate past max_message_bytes end the session with 1009."""
    async with live.http.ws_connect(
        live.ws_url + "/deflated", protocols=("2.0",), compress=15
    ) as ws:
        assert ws.compress == 15
        for n in range(50):
            await ws.send_str(json.dumps(["getstats", "PC_0", {"n": n, "pad": "p" * 500}, n]))
        await ws.close()
    stored = await stored_lines(live, "/deflated")
    assert [json.loads(line)[2]["n"] for line in stored] == list(range(50))

    reader, writer, answer = await open_raw(
        live, upgrade_head("/bomb", extra="Sec-WebSocket-Extensions: permessage-deflate\r\n")
    )
    assert b"Sec-WebSocket-Extensions: permessage-deflate" in answer
    packer = zlib.compressobj(wbits=-15)
    bomb = (packer.compress(b"[" + b" " * 10_000_000) + packer.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert len(bomb) < 65536
    writer.write(client_frame(1, b'["create","PC_0",{},1]') + client_frame(1, bomb, rsv=0x40))
    frames = await server_frames(reader)
    writer.close()
    assert int.from_bytes(frames[-1][1][:2], "big") == 1009


async def test_http_and_upgrades_share_a_pooled_client(live: RunningCollector) -> None:
    """A client that pools connections (aiohttp's) asks the API, then upgrades: the
    API's answer closed its connection, so the upgrade comes on a new one."""
    async with aiohttp.ClientSession() as http:
        for n in range(3):
            async with http.get(live.base_url + "/healthz") as response:
                assert response.status == 200
                assert response.headers["Connection"] == "close"
            async with http.ws_connect(live.ws_url + f"/pooled{n}", protocols=("2.0",)) as ws:
                await ws.send_str('["create","PC_0",{},1]')
            async with http.get(live.base_url + "/v1/sessions") as response:
                assert response.status == 200
    for n in range(3):
        assert await stored_lines(live, f"/pooled{n}") == ['["create","PC_0",{},1]']


async def test_a_fault_while_handling_a_message_cuts_the_socket_not_the_server(
    live: RunningCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception where none is expected (here: the identity's record write) cuts
    that socket (1006 for the client, an ERROR line); the session is stored as after
    any drop, and the server goes on."""

    if is_compiled("rtcstats_server.sessions.live"):
        pytest.skip("the fault is patched into SessionManager, whose compiled class is closed")

    async def broken(*_: object) -> None:
        raise RuntimeError("store fault")

    monkeypatch.setattr(live.manager, "identity", broken)
    async with live.http.ws_connect(live.ws_url + "/fault", protocols=("2.0",)) as ws:
        await ws.send_str('["create","PC_0",{},1]')
        await ws.send_str('["identity",null,{"userId":"u"},2]')
        message = await ws.receive(timeout=10)
        assert message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    record = await live.wait_for_record(lambda r: r["url"] == "/fault" and r["state"] == "stored")
    assert record["close_code"] == 1006
    assert lines_of(await live.dump_text(record["id"]))[0] == '["create","PC_0",{},1]'
    assert (await live.get_json("/healthz"))["status"] == "ok"
