"""10,000 hostile messages over many sockets against a collector process, while one
honest real-fixture session streams: the honest dump arrives intact, /healthz still
answers, and memory stays bounded. Prints the count of each outcome (close codes per
kind of socket) and asserts every defined answer was given at least once.

What "RSS within 50 MB" measures: ``before`` is taken once the server has served one
honest session (a real server state: its modules, database and first dump written);
no hostile traffic precedes it. ``after`` is taken when the first hostile round and
the concurrent honest session are done. A second, identical round then must add far
less (15 MB): what a first round leaves (worker threads, their zstd contexts, malloc
arenas) is paid once, and anything kept per connection would show up again here.

The server is a subprocess so its RSS is its own, not the test's.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.services import streams
from tests.services.collector import wait_until
from tests.services.process import CollectorProcess

HOSTILE_MESSAGES = 10_000
SOCKETS = 200
MAX_BAD = 20
#: Over ingest.max_message_bytes (1 MiB by default): the server must close 1009.
OVERSIZED = "x" * (1_200_000)

#: The kinds of hostile socket, each ending in the answer of the core issue it expects.
#: ``bad`` sends only violations until the server gives up on it; the others send a mix
#: that stays under ``max_bad_messages`` and end with the message named by the kind.
EXPECTED_CLOSE = {"oversized": 1009, "binary": 1003, "utf8": 1007, "bad": 1007, "tolerated": 1000}
KINDS = tuple(EXPECTED_CLOSE)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def violation(rng: random.Random, n: int) -> str:
    """A message the rtcstats#5.0 decoder must refuse (dropped, counted as bad)."""
    kind = n % 6
    if kind == 0:
        return "[" * 100_000 + "]" * 100_000  # nested 100,000 deep
    if kind == 1:
        return '["getstats","PC_0",' + "9" * 10_000 + ",1]"  # a number of 10,000 digits
    if kind == 2:
        return '{"type":"sn","body":{"value":99,"state":"initial"}}'  # control from a client
    if kind == 3:
        # The jitsi dialect's message on an rtcstats-js socket.
        return json.dumps({"statsSessionId": "fuzz", "type": "stats-entry", "data": "[1,2]"})
    if kind == 4:
        return "{not json"
    return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 300)))


def tolerated(rng: random.Random, n: int) -> str:
    """Well-formed rtcstats#5.0 messages with hostile content: stored, never fatal."""
    kind = n % 5
    if kind == 0:  # a 900 KB string in an identity
        return json.dumps(["identity", None, {"confName": "x" * 900_000, "userId": "u"}, 1])
    if kind == 1:  # a statsSessionId of 10,000 characters
        return json.dumps(["identity", None, {"statsSessionId": "s" * 10_000}, 1])
    if kind == 2:
        return '["getstats","PC_0",{"C":{"type":"local-candidate","address":"10.1.2.3"}},1]'
    if kind == 3:
        return json.dumps(["log", None, "y" * rng.randrange(10_000, 100_000), 1])
    return json.dumps(["create", "PC_1", {"x": [[[[[]]]]]}, 1])


def plan(kind: str, rng: random.Random, count: int) -> list[str | bytes]:
    """The messages of one socket of ``kind``; bytes are sent as a TEXT frame."""
    if kind == "bad":
        return [violation(rng, n) for n in range(MAX_BAD)]
    # One violation in four keeps the mix under MAX_BAD for up to 60 messages.
    messages: list[str | bytes] = [
        violation(rng, n) if n % 4 == 3 else tolerated(rng, n) for n in range(count - 1)
    ]
    if kind == "oversized":
        messages.append(OVERSIZED)
    elif kind == "binary":
        messages.append(b'["getstats","PC_0",{},1]')
    elif kind == "utf8":
        messages.append(b"\xff\xfe invalid utf-8 \xc3\x28")
    else:
        messages.append(tolerated(rng, count))
    return messages


def shares() -> list[tuple[str, int]]:
    """(kind, messages) per socket, HOSTILE_MESSAGES in all."""
    kinds = [KINDS[i % len(KINDS)] for i in range(SOCKETS)]
    rest = HOSTILE_MESSAGES - MAX_BAD * kinds.count("bad")
    others = SOCKETS - kinds.count("bad")
    counts = iter([rest // others + (1 if i < rest % others else 0) for i in range(others)])
    return [(kind, MAX_BAD if kind == "bad" else next(counts)) for kind in kinds]


async def hostile_socket(
    http: aiohttp.ClientSession,
    url: str,
    rng: random.Random,
    kind: str,
    count: int,
    outcomes: collections.Counter[str],
) -> None:
    path = "/fuzz?statsSessionId=fuzz&isReconnect=false"
    try:
        ws = await http.ws_connect(url + path, protocols=("rtcstats#5.0",), max_msg_size=0)
    except aiohttp.WSServerHandshakeError as refused:
        outcomes[f"refused {refused.status}"] += count
        return
    async with ws:
        for message in plan(kind, rng, count):
            try:
                if isinstance(message, bytes) and kind == "utf8":
                    # A TEXT frame whose payload is not UTF-8: the server must close 1007.
                    await ws._writer.send_frame(message, aiohttp.WSMsgType.TEXT)
                elif isinstance(message, bytes):
                    await ws.send_bytes(message)
                else:
                    await ws.send_str(message)
                outcomes["sent"] += 1
            except (ConnectionError, RuntimeError, TypeError):
                outcomes["send after close"] += 1
        if kind == "tolerated":
            await asyncio.wait_for(ws.close(), 30)  # the server echoes our 1000
        else:
            # The last message was fatal: read the server's close frame.
            answer = await ws.receive(timeout=30)
            if answer.type is aiohttp.WSMsgType.CLOSE:
                await asyncio.wait_for(ws.close(), 30)
        outcomes[f"{kind}: close {ws.close_code}"] += 1


async def hostile_round(
    http: aiohttp.ClientSession, url: str, seed: int, outcomes: collections.Counter[str]
) -> None:
    """Waves of 50 sockets, so many are open at once without one giant burst."""
    rng = random.Random(seed)
    sockets = shares()
    for i in range(0, SOCKETS, 50):
        await asyncio.gather(
            *(hostile_socket(http, url, rng, k, n, outcomes) for k, n in sockets[i : i + 50])
        )


async def test_live_fuzz_leaves_honest_session_and_memory_intact(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    env = {
        "RTCSTATS_INGEST__MAX_BAD_MESSAGES": str(MAX_BAD),
        "RTCSTATS_PRIVACY__OBFUSCATE_IP_ADDRESSES": "false",
        "RTCSTATS_LOGGING__LEVEL": "WARNING",
    }
    server = CollectorProcess(tmp_path / "data", env=env)
    server.start()
    assert server.proc is not None
    pid = server.proc.pid
    base = server.base_url
    honest = streams.captured(fixtures_dir, "rtcstats-js-2.4.0-loopback-call")
    try:
        async with aiohttp.ClientSession() as http:
            await server.wait_healthy(http, timeout=30)

            async def stream_honestly() -> None:
                async with http.ws_connect(
                    server.ws_url + honest.path, protocols=(honest.subprotocol,)
                ) as ws:
                    for message in honest.messages:
                        await ws.send_str(message)
                        await asyncio.sleep(0)
                    await ws.close(code=honest.close_code)

            async def honest_records() -> list[dict[str, Any]]:
                async with http.get(base + "/v1/sessions?state=stored&limit=1000") as r:
                    page = await r.json()
                return [s for s in page["sessions"] if s["url"] == honest.path]

            async def check_honest(known: set[str]) -> str:
                """The id of the newly stored honest session, after checking its dump."""

                async def stored() -> bool:
                    return any(r["id"] not in known for r in await honest_records())

                await wait_until(stored, timeout=30, what="honest session stored")
                record = next(r for r in await honest_records() if r["id"] not in known)
                async with http.get(f"{base}/v1/sessions/{record['id']}/dump") as response:
                    dump = (await response.text()).splitlines()
                assert dump[2:-1] == honest.expected_lines
                assert record["dropped_messages"] == 0
                return str(record["id"])

            # The baseline: a server that has served one honest session, nothing hostile.
            await stream_honestly()
            first = await check_honest(set())
            before = rss_mb(pid)

            outcomes: collections.Counter[str] = collections.Counter()
            started = time.monotonic()
            honest_task = asyncio.create_task(stream_honestly())
            await hostile_round(http, server.ws_url, 8, outcomes)
            await honest_task
            elapsed = time.monotonic() - started
            await check_honest({first})
            after = rss_mb(pid)

            again: collections.Counter[str] = collections.Counter()
            await hostile_round(http, server.ws_url, 9, again)
            steady = rss_mb(pid)

            async with http.get(base + "/metrics") as response:
                metrics = [
                    line
                    for line in (await response.text()).splitlines()
                    if line.startswith(("rtcstats_messages_dropped", "rtcstats_sessions_finished"))
                ]
            assert await server.healthy(http)
            print(
                f"\nlive fuzz: {HOSTILE_MESSAGES} hostile messages over {SOCKETS} sockets in "
                f"{elapsed:.1f} s; server RSS {before:.1f} MB after one honest session, "
                f"{after:.1f} MB after the first round, {steady:.1f} MB after a second"
            )
            for outcome, count in sorted(outcomes.items()):
                print(f"  {outcome}: {count}")
            for line in metrics:
                print(f"  {line}")
            for kind, code in EXPECTED_CLOSE.items():
                assert outcomes[f"{kind}: close {code}"] > 0, (kind, outcomes)
                # 1006: the server cut the TCP connection under a frame still being sent.
                others = {o for o in outcomes if o.startswith(f"{kind}: ")}
                assert others <= {f"{kind}: close {code}", f"{kind}: close 1006"}, outcomes
            assert outcomes["sent"] >= HOSTILE_MESSAGES * 3 // 4
            assert after - before < 50
            assert steady - after < 15  # measured +4 to +8 MB: warm-up, not a leak
    finally:
        code, _ = await server.terminate()
        server.kill()
    assert code == 0
    assert "Traceback" not in server.log(), server.log()[-3000:]
