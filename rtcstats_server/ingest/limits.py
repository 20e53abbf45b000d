"""Flood limits on new ingest connections, decided before the upgrade.

Three questions per upgrade, cheapest first: is the server full (503), does this
client address hold too many sockets (429), has it opened too many lately (429, a
token bucket per address). The address is the TCP peer, or the client named by
``X-Forwarded-For`` when the peer is one of ``limits.trusted_proxies``: anyone else
could write any address there. Loopback clients are local processes (benchmarks,
sidecars) and are not limited per address; the overall limit still holds.

"Per address" means per IPv4 address, but per IPv6 network of
``limits.ipv6_prefix_length`` bits (a /64 by default): a host is given a whole /64 and
can connect from a new address of it every time, which a per-/128 limit would never
stop. An IPv4 address written as IPv6 (``::ffff:198.51.100.7``, what a dual-stack
socket reports) counts as the IPv4 address.

State is one small dict entry per address with an open socket or a bucket still
refilling; idle full buckets are pruned, so a scan from many addresses leaves nothing.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

from rtcstats_server.config import LimitsConfig
from rtcstats_server.exceptions import HandshakeRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Buckets are pruned once the table holds this many addresses.
_PRUNE_AT = 4096


def parse_ip(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ConnectionLimits:
    def __init__(self, config: LimitsConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.proxies = [ipaddress.ip_network(cidr, strict=False) for cidr in config.trusted_proxies]
        self.open_total = 0
        #: Keyed by :meth:`key`: an IPv4 address or an IPv6 network.
        self.open_by_ip: dict[str, int] = {}
        #: key → (tokens left, when last refilled)
        self.buckets: dict[str, tuple[float, float]] = {}

    def _trusted(self, address: IPAddress | None) -> bool:
        return address is not None and any(address in network for network in self.proxies)

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address: the peer, or the first untrusted hop of the header
        read from the right (the part our own proxies appended)."""
        address = parse_ip(peer)
        if address is None:
            return peer
        if not forwarded_for or not self._trusted(address):
            return str(address)
        for hop in reversed(forwarded_for.split(",")[-16:]):
            candidate = parse_ip(hop)
            if candidate is None:
                break
            address = candidate
            if not self._trusted(address):
                break
        return str(address)

    def key(self, ip: str) -> str:
        """What the per-address limits count ``ip`` under: the IPv4 address, or the
        IPv6 network of ``limits.ipv6_prefix_length`` bits holding it."""
        address = parse_ip(ip)
        if isinstance(address, ipaddress.IPv6Address):
            prefix = self.config.ipv6_prefix_length
            return str(ipaddress.IPv6Network((address, prefix), strict=False))
        return ip if address is None else str(address)

    def admit(self, ip: str) -> None:
        """Count a new connection from ``ip`` or refuse it; pair with :meth:`release`."""
        config = self.config
        if config.max_connections and self.open_total >= config.max_connections:
            raise HandshakeRefused(503, "server_full", "too many connections; retry later")
        address = parse_ip(ip)
        key = self.key(ip)
        if address is not None and not address.is_loopback:
            per_ip = config.max_connections_per_ip
            if per_ip and self.open_by_ip.get(key, 0) >= per_ip:
                raise HandshakeRefused(
                    429, "too_many_connections_per_ip", "too many connections from your address"
                )
            if config.connections_per_ip_per_s and not self._take_token(key):
                raise HandshakeRefused(
                    429, "connection_rate", "connecting too fast from your address; slow down"
                )
        self.open_total += 1
        self.open_by_ip[key] = self.open_by_ip.get(key, 0) + 1

    def release(self, ip: str) -> None:
        key = self.key(ip)
        self.open_total -= 1
        left = self.open_by_ip.get(key, 1) - 1
        if left > 0:
            self.open_by_ip[key] = left
        else:
            self.open_by_ip.pop(key, None)

    def _take_token(self, key: str) -> bool:
        rate = self.config.connections_per_ip_per_s
        burst = float(self.config.connection_burst_per_ip)
        now = self.clock()
        tokens, then = self.buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - then) * rate)
        if len(self.buckets) >= _PRUNE_AT:
            self._prune(now)
        if tokens < 1.0:
            self.buckets[key] = (tokens, now)
            return False
        self.buckets[key] = (tokens - 1.0, now)
        return True

    def _prune(self, now: float) -> None:
        rate = self.config.connections_per_ip_per_s
        burst = self.config.connection_burst_per_ip
        self.buckets = {
            ip: (tokens, then)
            for ip, (tokens, then) in self.buckets.items()
            if tokens + (now - then) * rate < burst
        }
