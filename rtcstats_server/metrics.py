"""Every Prometheus collector of the server, in one place, on the app's own registry.

Counters touched once per message (messages, bytes) are plain integers read at
scrape time by a custom collector: a labelled prometheus_client counter costs a
lock and a dict lookup per increment, which matters at 100k messages per second.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class Traffic:
    """Per-dialect integers the ingest path bumps directly."""

    __slots__ = ("bytes", "connections", "messages", "open")

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.connections = 0
        self.open = 0


class _TrafficCollector(Collector):
    def __init__(self, traffic: dict[str, Traffic]) -> None:
        self.traffic = traffic

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "messages": CounterMetricFamily(
                "rtcstats_messages_received",
                "Websocket text messages received.",
                labels=["dialect"],
            ),
            "bytes": CounterMetricFamily(
                "rtcstats_received_bytes", "Bytes of messages received.", labels=["dialect"]
            ),
            "connections": CounterMetricFamily(
                "rtcstats_connections", "Websocket connections accepted.", labels=["dialect"]
            ),
            "open": GaugeMetricFamily(
                "rtcstats_connections_open", "Websocket connections open now.", labels=["dialect"]
            ),
        }
        for dialect, numbers in sorted(self.traffic.items()):
            for name, family in families.items():
                family.add_metric([dialect], getattr(numbers, name))
        yield from families.values()


class Metrics:
    def __init__(self) -> None:
        # ``*_created`` series double the exposition and nobody graphs them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self.traffic: defaultdict[str, Traffic] = defaultdict(Traffic)
        self.registry.register(_TrafficCollector(self.traffic))
        r = self.registry
        self.refused = Counter(
            "rtcstats_connections_refused",
            "Upgrades refused before the websocket opened, by reason.",
            ["reason"],
            registry=r,
        )
        self.dropped = Counter(
            "rtcstats_messages_dropped",
            "Messages received but not stored, by reason.",
            ["reason"],
            registry=r,
        )
        self.closed_by_server = Counter(
            "rtcstats_connections_closed_by_server",
            "Connections the server closed, by close code.",
            ["code"],
            registry=r,
        )
        self.finished = Counter(
            "rtcstats_sessions_finished",
            "Sessions finished and stored, by end reason.",
            ["end_reason"],
            registry=r,
        )
        self.resumed = Counter(
            "rtcstats_sessions_resumed", "Reconnects that continued a live session.", registry=r
        )
        self.live = Gauge(
            "rtcstats_sessions_live", "Sessions in memory, by state.", ["state"], registry=r
        )
        self.dump_raw = Counter(
            "rtcstats_dump_raw_bytes", "Dump bytes before compression.", registry=r
        )
        self.dump_compressed = Counter(
            "rtcstats_dump_compressed_bytes", "Dump bytes after compression.", registry=r
        )
        self.store_errors = Counter(
            "rtcstats_store_errors",
            "Failed writes to a backend, by backend.",
            ["backend"],
            registry=r,
        )
