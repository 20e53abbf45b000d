"""10,000 hostile messages over many sockets against a collector process, while one
honest real-fixture session streams: the honest dump arrives intact, the server's RSS
stays within 50 MB of where it started, /healthz still answers. Prints the count of
each outcome (close codes, refusals) so a run shows what the server did.

The server is a subprocess so its RSS is its own, not the test's.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import time
from pathlib import Path

import aiohttp

from tests.services import streams
from tests.services.collector import wait_until
from tests.services.process import CollectorProcess

HOSTILE_MESSAGES = 10_000
SOCKETS = 200


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def hostile(rng: random.Random, n: int) -> str | bytes:
    """One hostile message; the mix covers every answer of the core issue."""
    kind = n % 12
    if kind == 0:
        return "[" * 100_000 + "]" * 100_000  # nested 100,000 deep
    if kind == 1:
        return '["x",null,' + "9" * 10_000 + ",1]"  # a number of 10,000 digits
    if kind == 2:
        return b"\xff\xfe invalid utf-8 \xc3\x28"  # sent as a TEXT frame below
    if kind == 3:
        return json.dumps(["identity", None, {"confName": "x" * 900_000, "userId": "u"}, 1])
    if kind == 4:
        return '{"type":"sn","body":{"value":99,"state":"initial"}}'  # control from a client
    if kind == 5:
        return json.dumps({"statsSessionId": "fuzz", "type": "stats-entry", "data": "[1,2"})
    if kind == 6:
        return '[20,"0",{"candidate":"x"},5]'  # another dialect's message
    if kind == 7:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 300)))
    if kind == 8:
        return "{not json"
    if kind == 9:
        return '["getstats","PC_0",{"C":{"type":"local-candidate","address":"10.1.2.3"}},1]'
    if kind == 10:
        return json.dumps({"type": "identity", "data": {"x": [[[[[]]]]]}})
    return "x" * rng.randrange(70_000, 140_000)  # over max_message_bytes


async def hostile_socket(
    http: aiohttp.ClientSession,
    url: str,
    rng: random.Random,
    share: list[int],
    outcomes: collections.Counter[str],
) -> None:
    subprotocol = rng.choice(["2.0", "rtcstats#5.0", "3.1_STANDARD", "7_JVB"])
    path = "/fuzz?statsSessionId=fuzz&isReconnect=false"
    try:
        ws = await http.ws_connect(url + path, protocols=(subprotocol,), max_msg_size=0)
    except aiohttp.WSServerHandshakeError as refused:
        outcomes[f"refused {refused.status}"] += len(share)
        return
    async with ws:
        for n in share:
            message = hostile(rng, n)
            try:
                if isinstance(message, bytes):
                    # A TEXT frame whose payload is not UTF-8: the server must close 1007.
                    await ws._writer.send_frame(message, aiohttp.WSMsgType.TEXT)
                else:
                    await ws.send_str(message)
                outcomes["sent"] += 1
            except (ConnectionError, RuntimeError, TypeError):
                outcomes["send after close"] += 1
            if ws.closed:
                break
        # Whatever the server did not close itself, the client closes now.
        if not ws.closed:
            await asyncio.wait_for(ws.close(), 30)
        outcomes[f"close {ws.close_code}"] += 1


async def test_live_fuzz_leaves_honest_session_and_memory_intact(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    env = {
        "RTCSTATS_INGEST__MAX_BAD_MESSAGES": "20",
        "RTCSTATS_PRIVACY__OBFUSCATE_IP_ADDRESSES": "false",
        "RTCSTATS_LOGGING__LEVEL": "WARNING",
    }
    server = CollectorProcess(tmp_path / "data", env=env)
    server.start()
    assert server.proc is not None
    port = server.port
    base = server.base_url
    try:
        async with aiohttp.ClientSession() as http:

            async def healthy() -> bool:
                return await server.healthy(http)

            await server.wait_healthy(http, timeout=30)
            # Warm-up: one round of the same load first, so the baseline already holds
            # what any busy server holds (lazily imported modules, allocator arenas,
            # zstd contexts); the measured run then shows whether memory keeps growing.
            warm: collections.Counter[str] = collections.Counter()
            warm_rng = random.Random(7)
            await asyncio.gather(
                *(
                    hostile_socket(http, server.ws_url, warm_rng, list(range(k, 600, 50)), warm)
                    for k in range(50)
                )
            )
            before = rss_mb(server.proc.pid)

            honest = streams.captured(fixtures_dir, "rtcstats-js-2.4.0-loopback-call")
            rng = random.Random(8)
            numbers = list(range(HOSTILE_MESSAGES))
            shares = [numbers[i::SOCKETS] for i in range(SOCKETS)]
            outcomes: collections.Counter[str] = collections.Counter()

            async def stream_honestly() -> None:
                async with http.ws_connect(
                    f"ws://127.0.0.1:{port}{honest.path}", protocols=(honest.subprotocol,)
                ) as ws:
                    for message in honest.messages:
                        await ws.send_str(message)
                        await asyncio.sleep(0)
                    await ws.close(code=honest.close_code)

            # Waves of sockets, so many are open at once without one giant burst.
            started = time.monotonic()
            wave = 50
            honest_task = asyncio.create_task(stream_honestly())
            for i in range(0, SOCKETS, wave):
                await asyncio.gather(
                    *(
                        hostile_socket(http, f"ws://127.0.0.1:{port}", rng, share, outcomes)
                        for share in shares[i : i + wave]
                    )
                )
            await honest_task
            elapsed = time.monotonic() - started

            async def honest_stored() -> bool:
                async with http.get(base + "/v1/sessions?state=stored&limit=1000") as r:
                    page = await r.json()
                return any(s["url"] == honest.path for s in page["sessions"])

            await wait_until(honest_stored, timeout=30, what="honest session stored")
            async with http.get(base + "/v1/sessions?limit=1000") as response:
                records = (await response.json())["sessions"]
            record = next(r for r in records if r["url"] == honest.path)
            async with http.get(f"{base}/v1/sessions/{record['id']}/dump") as response:
                dump = (await response.text()).splitlines()
            assert dump[2:-1] == honest.expected_lines
            assert record["dropped_messages"] == 0

            async with http.get(base + "/metrics") as response:
                metrics = [
                    line
                    for line in (await response.text()).splitlines()
                    if line.startswith(("rtcstats_messages_dropped", "rtcstats_sessions_finished"))
                ]
            after = rss_mb(server.proc.pid)
            assert await healthy()
            print(
                f"\nlive fuzz: {HOSTILE_MESSAGES} hostile messages over {SOCKETS} sockets in "
                f"{elapsed:.1f} s; server RSS {before:.1f} MB before, {after:.1f} MB after"
            )
            for outcome, count in sorted(outcomes.items()):
                print(f"  {outcome}: {count}")
            for line in metrics:
                print(f"  {line}")
            assert after - before < 50
            assert outcomes["sent"] >= HOSTILE_MESSAGES // 3
    finally:
        code, _ = await server.terminate()
        server.kill()
    assert code == 0
    assert "Traceback" not in server.log(), server.log()[-3000:]
