"""Flood limits: per-address and overall caps, the per-address rate, slow or broken
HTTP requests; each refusal comes before the upgrade with its status and metric."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp
import pytest

from rtcstats_server.config import LimitsConfig
from rtcstats_server.exceptions import HandshakeRefused
from rtcstats_server.ingest.limits import ConnectionLimits
from tests.services.collector import RunningCollector, run_collector, wait_until


def limits(**settings: object) -> ConnectionLimits:
    now = [0.0]
    checker = ConnectionLimits(LimitsConfig(**settings), clock=lambda: now[0])  # type: ignore[arg-type]
    checker.now = now  # type: ignore[attr-defined]
    return checker


def test_forwarded_for_is_honoured_only_from_trusted_proxies() -> None:
    checker = limits(trusted_proxies=["10.0.0.0/8", "2001:db8::/32"])
    assert checker.client_ip("10.1.2.3", "198.51.100.7, 10.9.9.9") == "198.51.100.7"
    assert checker.client_ip("2001:db8::1", "198.51.100.7") == "198.51.100.7"
    # A client cannot prepend a fake hop: the first untrusted one from the right wins.
    assert checker.client_ip("10.1.2.3", "1.1.1.1, 198.51.100.7") == "198.51.100.7"
    assert checker.client_ip("203.0.113.5", "198.51.100.7") == "203.0.113.5"
    assert checker.client_ip("10.1.2.3", "garbage") == "10.1.2.3"


def test_rate_bucket_refills_and_idle_buckets_are_pruned() -> None:
    checker = limits(connections_per_ip_per_s=2, connection_burst_per_ip=3)
    for _ in range(3):
        checker.admit("198.51.100.7")
    with pytest.raises(HandshakeRefused) as refused:
        checker.admit("198.51.100.7")
    assert (refused.value.status, refused.value.reason) == (429, "connection_rate")
    checker.now[0] += 0.5  # type: ignore[attr-defined]
    checker.admit("198.51.100.7")
    for n in range(5000):
        checker.admit(f"10.{n // 250}.{n % 250}.1")
        checker.release(f"10.{n // 250}.{n % 250}.1")
    checker.now[0] += 10  # type: ignore[attr-defined]
    checker.admit("203.0.113.1")
    assert len(checker.buckets) < 4096
    assert checker.open_total == 5
    assert set(checker.open_by_ip) == {"198.51.100.7", "203.0.113.1"}


def test_loopback_is_not_limited_per_address_but_counts_overall() -> None:
    checker = limits(max_connections=3, max_connections_per_ip=1)
    checker.admit("127.0.0.1")
    checker.admit("127.0.0.1")
    checker.admit("::1")
    with pytest.raises(HandshakeRefused) as refused:
        checker.admit("127.0.0.1")
    assert (refused.value.status, refused.value.reason) == (503, "server_full")


def test_ipv6_clients_are_limited_per_network() -> None:
    checker = limits(max_connections_per_ip=2, connections_per_ip_per_s=0)
    assert checker.key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert checker.key("[2001:db8:1:2::ffff]") == "2001:db8:1:2::/64"
    assert checker.key("::ffff:198.51.100.7") == "198.51.100.7"  # a dual-stack socket's peer
    assert checker.key("198.51.100.7") == "198.51.100.7"
    checker.admit("2001:db8:1:2::1")
    checker.admit("2001:db8:1:2:ffff:ffff:ffff:ffff")
    with pytest.raises(HandshakeRefused) as refused:
        checker.admit("2001:db8:1:2:1234::5")  # a third address of the same /64
    assert refused.value.reason == "too_many_connections_per_ip"
    checker.admit("2001:db8:1:3::1")  # the next /64 is another client
    checker.release("2001:db8:1:2::1")
    checker.admit("2001:db8:1:2:5678::9")
    assert checker.open_by_ip == {"2001:db8:1:2::/64": 2, "2001:db8:1:3::/64": 1}
    # The prefix is configurable; an IPv4 address written as IPv6 stays a single address,
    # and loopback (either way of writing it) is not limited per address.
    wide = limits(max_connections_per_ip=1, ipv6_prefix_length=48)
    assert wide.key("2001:db8:1:ffff::1") == "2001:db8:1::/48"
    wide.admit("::ffff:127.0.0.1")
    wide.admit("::ffff:127.0.0.1")
    wide.admit("::ffff:198.51.100.7")
    with pytest.raises(HandshakeRefused):
        wide.admit("198.51.100.7")


LIVE = {
    "limits": {
        "max_connections": 6,
        "max_connections_per_ip": 2,
        "connections_per_ip_per_s": 0.01,
        "connection_burst_per_ip": 3,
        "trusted_proxies": ["127.0.0.0/8"],
        "handshake_timeout_s": 1.0,
    }
}


async def connect(collector: RunningCollector, client: str) -> aiohttp.ClientWebSocketResponse:
    return await collector.http.ws_connect(
        collector.ws_url + "/room", protocols=("2.0",), headers={"X-Forwarded-For": client}
    )


async def connect_when_free(
    collector: RunningCollector, client: str
) -> aiohttp.ClientWebSocketResponse:
    """The server releases a closed socket's slot just after the close handshake."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return await connect(collector, client)
        except aiohttp.WSServerHandshakeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


async def refused_status(collector: RunningCollector, client: str) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await connect(collector, client)
    return refused.value.status


async def test_live_limits(tmp_path: Path) -> None:
    async with run_collector(tmp_path / "data", LIVE) as c:
        a1, a2 = await connect(c, "198.51.100.1"), await connect(c, "198.51.100.1")
        assert await refused_status(c, "198.51.100.1") == 429  # third socket of one address
        await a1.close()
        a3 = await connect_when_free(c, "198.51.100.1")  # a slot is free again
        await a2.close()
        await a3.close()

        async def rate_refused() -> bool:
            # 429 either way; once the closed sockets' slots are released, the reason is
            # the spent burst of 3 (a per-address refusal takes no token).
            assert await refused_status(c, "198.51.100.1") == 429
            async with c.http.get(c.base_url + "/metrics") as response:
                return 'reason="connection_rate"' in await response.text()

        await wait_until(rate_refused, what="a refusal for the connection rate")
        others = [await connect_when_free(c, f"203.0.113.{n}") for n in range(6)]
        assert await refused_status(c, "203.0.113.99") == 503  # server full
        for ws in others:
            await ws.close()
        async with c.http.get(c.base_url + "/metrics") as response:
            text = await response.text()
        for reason in ("too_many_connections_per_ip", "connection_rate", "server_full"):
            assert f'rtcstats_connections_refused_total{{reason="{reason}"}}' in text


async def test_slowloris_and_oversized_request_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with run_collector(tmp_path / "data", LIVE) as c:
        # Opens TCP and trickles an upgrade request that never ends: closed by the
        # handshake timeout (1 s here), not held forever.
        reader, writer = await asyncio.open_connection("127.0.0.1", c.port)
        started = time.monotonic()
        writer.write(b"GET /room HTTP/1.1\r\nHost: x\r\n")
        closed = False
        while time.monotonic() - started < 5:
            try:
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
                if await asyncio.wait_for(reader.read(1), 0.2) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except ConnectionError:
                closed = True
                break
        writer.close()
        assert closed and time.monotonic() - started < 3

        # A statsSessionId of 10,000 characters: aiohttp's line limit answers 400; we
        # count it and log no traceback.
        reader, writer = await asyncio.open_connection("127.0.0.1", c.port)
        writer.write(b"GET /room?statsSessionId=" + b"x" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.read(64), 5)
        writer.close()
        assert head.split(b" ")[1] == b"400"
        async with c.http.get(c.base_url + "/metrics") as response:
            text = await response.text()
        assert 'rtcstats_connections_refused_total{reason="bad_http_request"} 1.0' in text
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not [r for r in caplog.records if r.exc_info]


async def test_live_limits_hold_for_every_address_of_one_ipv6_network(tmp_path: Path) -> None:
    """One attacker with a /64 connects from a new address each time: limited as one."""
    async with run_collector(tmp_path / "data", LIVE) as c:
        net = "2001:db8:aa:bb"
        held = [await connect(c, f"{net}::1"), await connect(c, f"{net}:1:2:3:4")]
        assert await refused_status(c, f"{net}:ffff:ffff:ffff:fffe") == 429  # per address
        other = await connect(c, "2001:db8:aa:bc::1")  # the neighbouring /64: a stranger
        await held[0].close()
        held.append(await connect_when_free(c, f"{net}::3"))  # its slot is the network's
        for ws in held:
            await ws.close()

        async def rate_refused() -> bool:
            # The burst of 3 is spent by three addresses; a fourth is new, its network not.
            assert await refused_status(c, f"{net}:9::9") == 429
            async with c.http.get(c.base_url + "/metrics") as response:
                return 'reason="connection_rate"' in await response.text()

        await wait_until(rate_refused, what="a refusal for the connection rate of the /64")
        await other.close()
        records = await c.get_json("/v1/sessions")
        assert records["sessions"] == []  # nothing was streamed; nothing stored
