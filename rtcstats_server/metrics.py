"""Every Prometheus collector of the server, in one place, on the app's own registry.

Counters touched once per message (messages, bytes) are plain integers read at
scrape time by a custom collector: a labelled prometheus_client counter costs a
lock and a dict lookup per increment, which matters at 100k messages per second.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from rtcstats_server.compiled import analysis_build
from rtcstats_server.version import installed_version

#: Close codes counted by their number; any other is counted as ``other``. RFC 6455's
#: codes and jitsi's final ones (3001 conference left, 3002 dump error): the server
#: sends no other today, and a label must never carry a number a client chose.
CLOSE_CODE_LABELS = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3001, 3002}
)


def close_code_label(code: int) -> str:
    return str(code) if code in CLOSE_CODE_LABELS else "other"


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
        # What is running, for dashboards that compare nodes or releases: the analysis
        # build is ``compiled`` (mypyc, setup.py) or ``pure`` (rtcstats_server/compiled.py).
        self.build_info = Gauge(
            "rtcstats_build_info",
            "Always 1; the labels name the running version and analysis build (compiled or pure).",
            ["version", "analysis"],
            registry=r,
        )
        self.build_info.labels(installed_version(), analysis_build()).set(1)
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
        self.relayed = Counter(
            "rtcstats_resumes_relayed",
            "Reconnects relayed to the worker that holds their session (serve --workers).",
            registry=r,
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
        # -- the analysis of stored sessions (quality summaries) --------------------------
        self.analysis_queue = Gauge(
            "rtcstats_analysis_queue_jobs",
            "Analysis jobs in the shared queue by state: pending (the depth), uploading "
            "(running), uploaded (done), failed.",
            ["state"],
            registry=r,
        )
        self.analyses = Counter(
            "rtcstats_analyses",
            "Session analyses run, by outcome: done, retried, failed, lease_lost (counted "
            "by serve for its analysis worker processes).",
            ["outcome"],
            registry=r,
        )
        self.analysis_worker_restarts = Counter(
            "rtcstats_analysis_worker_restarts",
            "Analysis worker processes that exited unasked and were started again.",
            registry=r,
        )
        # -- forwarding to an upstream (rtcstats.com) ------------------------------------
        self.forward_queue = Gauge(
            "rtcstats_forward_queue_jobs",
            "Upload jobs in the shared queue, by forwarder and state (pending = depth).",
            ["forwarder", "state"],
            registry=r,
        )
        self.forward_uploads = Counter(
            "rtcstats_forward_uploads",
            "Upload attempts by outcome: uploaded, retried, failed, lease_lost, interrupted, "
            "duplicate (landed after the lease was taken over).",
            ["forwarder", "outcome"],
            registry=r,
        )
        self.forward_unconfirmed = Counter(
            "rtcstats_forward_unconfirmed",
            "Final upload calls (rtcstats.com: assemble) sent whose answer never came "
            "(timeout, dropped connection, lease lost while waiting): each may have "
            "landed, and the session is sent again, so it may be upstream twice.",
            ["forwarder"],
            registry=r,
        )
        self.forward_seconds = Histogram(
            "rtcstats_forward_upload_seconds",
            "Time of one upload attempt, preparation (conversion) included.",
            ["forwarder"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.forward_auth_alert = Gauge(
            "rtcstats_forward_auth_alert",
            "1 while the upstream refuses our token (401) or our plan (402): every upload "
            "fails the same way until an operator acts.",
            ["forwarder", "reason"],
            registry=r,
        )
        self.upload_backlog_files = Gauge(
            "rtcstats_upload_backlog_files",
            "Finished dumps in the outbox, waiting for upload to object storage.",
            registry=r,
        )
        self.upload_backlog_bytes = Gauge(
            "rtcstats_upload_backlog_bytes",
            "Bytes of finished dumps in the outbox, waiting for upload.",
            registry=r,
        )
        self.uploads = Counter(
            "rtcstats_uploads",
            "Dump upload attempts to object storage, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.spool_bytes = Gauge(
            "rtcstats_spool_bytes",
            "Local bytes of live dumps plus dumps waiting for upload (see spool_max_bytes).",
            registry=r,
        )
        self.disk_free_bytes = Gauge(
            "rtcstats_disk_free_bytes",
            "Least free space among the disks the collector writes to (see min_free_bytes).",
            registry=r,
        )
        self.http_aborted = Counter(
            "rtcstats_http_responses_aborted",
            "HTTP responses cut short because the client went away (a cancelled download).",
            registry=r,
        )
        # -- the embeddable viewer (viewer/) ---------------------------------------------
        self.viewer_denied = Counter(
            "rtcstats_viewer_denied",
            "Viewer requests refused (403): missing, malformed, expired, bad_signature.",
            ["reason"],
            registry=r,
        )
        self.viewer_frame_refused = Counter(
            "rtcstats_viewer_frame_refused",
            "Viewer pages framed by an origin not in viewer.authorized_domains (the browser "
            "shows a blank frame); each origin is logged once.",
            registry=r,
        )
        self.viewer_seconds = Histogram(
            "rtcstats_viewer_model_seconds",
            "Time to have a viewer's data: cached, computed (whole dump) or window (zoom).",
            ["source"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        # -- the metadata spool (metadata/spool.py) ----------------------------------------
        self.metadata_spooled = Gauge(
            "rtcstats_metadata_spooled_writes",
            "Record writes waiting in the local spool for the metadata database.",
            registry=r,
        )
        self.metadata_up = Gauge(
            "rtcstats_metadata_up",
            "1 when the metadata database answers and the spool is replayed, else 0.",
            registry=r,
        )
        # -- dumps uploaded to /v1.0/upload (uploads/) -------------------------------------
        self.received_uploads = Counter(
            "rtcstats_received_uploads",
            "Dumps uploaded to /v1.0/upload, by outcome (stored or the error code).",
            ["outcome"],
            registry=r,
        )
        self.received_upload_bytes = Counter(
            "rtcstats_received_upload_bytes",
            "Bytes of dumps uploaded to /v1.0/upload and stored, as sent.",
            registry=r,
        )
