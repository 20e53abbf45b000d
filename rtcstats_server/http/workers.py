"""One worker among the N that ``serve --workers N`` runs on one port.

Each worker is a whole collector process (its own event loop, sessions and metrics
registry) that the kernel hands a share of the port's connections (SO_REUSEPORT).
What makes the N look like one service from outside lives here:

- every HTTP answer names the worker that gave it (``X-Rtcstats-Worker``), which is
  how tests (and an operator with curl) see the connections spread;
- ``/metrics`` on any worker answers for all of them: each worker also serves its own
  exposition on an abstract Unix socket named after the supervisor, and the one that
  was asked fetches its siblings' and merges them (counters, histograms and most
  gauges add up; a few gauges describe something shared and are not added, see
  ``NOT_ADDED``). prometheus-client's multiprocess mode would not do: it cannot carry
  the custom collectors and callback gauges ``metrics.py`` relies on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
from aiohttp import web
from aiohttp.client_exceptions import UnixClientConnectorError
from aiohttp.client_proto import ResponseHandler
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from rtcstats_server.http.front import Doors, UnixDoorSite
from rtcstats_server.http.keys import MANAGER, METRICS

log = logging.getLogger(__name__)

#: The response header naming the worker that answered.
WORKER_HEADER = "X-Rtcstats-Worker"

#: How long ``/metrics`` waits for a sibling's exposition before leaving it out.
SIBLING_TIMEOUT_S = 2.0

#: Gauges that every worker reports about the same shared thing (the job queues in the
#: shared store, the disk, the upstream's answer, the build): the largest value stands
#: for all.
#: ``rtcstats_metadata_up`` is the smallest: one worker that cannot write is news.
NOT_ADDED: dict[str, Callable[[Iterable[float]], float]] = {
    "rtcstats_build_info": max,
    "rtcstats_analysis_queue_jobs": max,
    "rtcstats_forward_queue_jobs": max,
    "rtcstats_forward_auth_alert": max,
    "rtcstats_disk_free_bytes": max,
    "rtcstats_metadata_up": min,
}


@dataclass(frozen=True)
class WorkerInfo:
    """Worker ``index`` of ``count``, under the supervisor named ``group`` (its pid)."""

    index: int
    count: int
    group: str

    def metrics_socket(self, index: int) -> str:
        """The abstract Unix socket (Linux: no file to clean up, no path length limit
        from a deep data dir) where worker ``index`` answers its siblings: its own
        exposition (``/metrics``), whether it holds a session (``/holds``)."""
        return f"\0rtcstats-collector-{self.group}-metrics-{index}"

    def ingest_socket(self, index: int) -> str:
        """Where worker ``index`` takes the upgrades its siblings relay (relay.py)."""
        return f"\0rtcstats-collector-{self.group}-ingest-{index}"


WORKER = web.AppKey("worker", WorkerInfo)

#: The client's address, as the worker that relayed a request to this one saw it.
RELAYED_FOR = "X-Rtcstats-Relayed-For"


def relayed_address(request: web.Request) -> str | None:
    """The client address a sibling relayed ``request`` for; None when not relayed.

    Believed only on a Unix socket: the siblings are its only callers (an abstract
    socket is reachable from this host's network namespace only); from TCP the
    header is anyone's.
    """
    address = request.headers.get(RELAYED_FOR)
    if address is None or request.transport is None:
        return None
    sock = request.transport.get_extra_info("socket")
    return address if sock is not None and sock.family == socket.AF_UNIX else None


def attach(app: web.Application, worker: WorkerInfo) -> None:
    """Make ``app`` worker ``worker.index``: the header and its own metrics socket."""
    app[WORKER] = worker

    async def name_worker(_: web.Request, response: web.StreamResponse) -> None:
        response.headers[WORKER_HEADER] = str(worker.index)

    app.on_response_prepare.append(name_worker)
    app.cleanup_ctx.append(_own_metrics_socket)


async def _own_metrics_socket(app: web.Application) -> AsyncIterator[None]:
    worker = app[WORKER]
    registry = app[METRICS].registry

    async def own(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry))

    async def holds(request: web.Request) -> web.Response:
        client, dialect = request.query.get("client", ""), request.query.get("dialect", "")
        held = MANAGER in app and app[MANAGER].holds_resumable(client, dialect)
        return web.Response(status=200 if held else 404)

    inner = web.Application()
    inner.router.add_get("/metrics", own)
    inner.router.add_get("/holds", holds)
    runner = web.AppRunner(inner, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.UnixSite(runner, worker.metrics_socket(worker.index)).start()
        yield
    finally:
        await runner.cleanup()


async def take_relayed(runner: web.AppRunner, worker: WorkerInfo, doors: Doors) -> None:
    """Listen for the upgrades and requests siblings relay to this worker (on the app's
    runner, through the same front door as the public port)."""
    await UnixDoorSite(runner, worker.ingest_socket(worker.index), doors).start()


async def connect_unix(
    factory: Callable[[], asyncio.BaseProtocol], path: str
) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
    """A connection to a sibling's (abstract) Unix socket, on either event loop.

    uvloop connects a path given as text through libuv, which cuts an abstract name at
    its leading NUL (EINVAL); a socket connected by the standard library and handed
    over works on both loops.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, path)
        return await loop.create_unix_connection(factory, sock=sock)
    except BaseException:
        sock.close()
        raise


class SiblingConnector(aiohttp.UnixConnector):
    """aiohttp's Unix connector, connecting through ``connect_unix`` (see there)."""

    async def _create_connection(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Any],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's signature
    ) -> ResponseHandler:
        factory = cast(Callable[[], ResponseHandler], self._factory)
        try:
            async with asyncio.timeout(timeout.sock_connect):
                _, protocol = await connect_unix(factory, self.path)
        except OSError as exc:
            raise UnixClientConnectorError(self.path, req.connection_key, exc) from exc
        return cast(ResponseHandler, protocol)


async def _sibling(worker: WorkerInfo, index: int) -> str | None:
    """Worker ``index``'s exposition, or None when it does not answer (restarting)."""
    connector = SiblingConnector(path=worker.metrics_socket(index))
    timeout = aiohttp.ClientTimeout(total=SIBLING_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            async with http.get("http://worker/metrics") as response:
                if response.status != 200:
                    return None
                return await response.text()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        log.debug("worker %d left out of /metrics: %s", index, exc)
        return None


async def merged_exposition(app: web.Application) -> bytes:
    """The exposition of every worker that answers, merged into one."""
    worker = app[WORKER]
    own = generate_latest(app[METRICS].registry).decode()
    others = await asyncio.gather(
        *(_sibling(worker, i) for i in range(worker.count) if i != worker.index)
    )
    texts = [own, *(text for text in others if text is not None)]
    return merge(texts, worker.count)


def merge(texts: list[str], configured: int) -> bytes:
    """One exposition from several: same name and labels, one sample (see NOT_ADDED),
    plus ``rtcstats_workers`` (configured) and ``rtcstats_workers_answering``."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            samples = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                samples.setdefault(key, []).append(sample.value)
    for name, family in families.items():
        combine = NOT_ADDED.get(name, sum)
        for (sample_name, labels), numbers in values[name].items():
            family.add_sample(sample_name, dict(labels), combine(numbers))
    workers = Metric("rtcstats_workers", "Worker processes configured (serve --workers).", "gauge")
    workers.add_sample("rtcstats_workers", {}, configured)
    answering = Metric(
        "rtcstats_workers_answering", "Workers whose metrics are in this answer.", "gauge"
    )
    answering.add_sample("rtcstats_workers_answering", {}, len(texts))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed([*families.values(), workers, answering]))
    return generate_latest(registry)


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families
