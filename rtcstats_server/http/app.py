"""Builds the aiohttp application: one port for ingest, the API, health and metrics.

Shared resources (stores, the session manager, metrics) are created at startup and
closed at cleanup, and hang off the app, so a test builds an app with its own
config and nothing leaks between apps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from rtcstats_server.analysis.geo import open_locator
from rtcstats_server.analysis.processes import WorkerPool, worker_count
from rtcstats_server.analysis.worker import Analysis
from rtcstats_server.compiled import analysis_build
from rtcstats_server.config import Config
from rtcstats_server.exceptions import StartupError, StoreUnavailable
from rtcstats_server.forwarders.worker import make_forwarding
from rtcstats_server.http import api, features, front, openapi, rtcstats_api, startup, ui, workers
from rtcstats_server.http.access import ApiAccess
from rtcstats_server.http.access_log import AccessLog, access_logger
from rtcstats_server.http.errors import Handler, HttpErrorLog, error, json_errors
from rtcstats_server.http.keys import (
    ANALYSIS,
    CONFIG,
    DUMPS,
    FORWARDING,
    GEO,
    MANAGER,
    METRICS,
    RECORDS,
    SPOOL,
    VIEWER,
)
from rtcstats_server.http.relay import WorkerRelay
from rtcstats_server.http.viewer import routes as viewer_routes
from rtcstats_server.http.viewer.advice import viewer_warnings
from rtcstats_server.http.viewer.service import make_viewer
from rtcstats_server.ingest.access import ClientAccess
from rtcstats_server.ingest.handler import IngestHandler
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.factory import make_job_queue, make_session_store
from rtcstats_server.metadata.spool import SpoolingSessionStore
from rtcstats_server.metrics import Metrics
from rtcstats_server.sessions.live import SessionManager
from rtcstats_server.sessions.retention import retention_running
from rtcstats_server.storage.factory import make_dump_store, make_spool
from rtcstats_server.version import installed_version

log = logging.getLogger(__name__)


def _watch_metadata_spool(records: SessionStore, metrics: Metrics) -> None:
    if isinstance(records, SpoolingSessionStore):
        metrics.metadata_spooled.set_function(lambda: records.spool.entries)
        metrics.metadata_up.set_function(lambda: float(records.healthy))
    else:
        metrics.metadata_up.set(1)  # the embedded store is a file of this process


def build_app(config: Config) -> web.Application:
    metrics = Metrics()
    app = web.Application(middlewares=[json_errors], client_max_size=1 << 20)
    app[CONFIG] = config
    app[METRICS] = metrics
    app[RECORDS] = make_session_store(config)
    _watch_metadata_spool(app[RECORDS], metrics)
    app[DUMPS] = make_dump_store(config, app[RECORDS], metrics)
    app[SPOOL] = make_spool(config, app[DUMPS], metrics)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        # Each resource is closed in reverse order, also when a later one fails to
        # open: aiohttp cleans up only contexts that entered completely, and a store
        # left open (the embedded store's thread) would keep a failed process alive.
        async with contextlib.AsyncExitStack() as opened:
            await app[RECORDS].open()
            opened.push_async_callback(app[RECORDS].close)
            await app[DUMPS].open()
            opened.push_async_callback(app[DUMPS].close)
            await app[SPOOL].start()
            opened.push_async_callback(app[SPOOL].stop)
            manager = SessionManager(config, app[DUMPS], app[RECORDS], metrics)
            app[MANAGER] = manager
            hooks = manager.finisher.hooks  # what every stored session gets, in order
            viewer = await make_viewer(config, app[RECORDS], app[DUMPS], metrics)
            if viewer is not None:
                app[VIEWER] = viewer
                hooks.append(viewer)
                for key, problem in viewer_warnings(config):
                    log.warning("configuration: %s %s", key, problem)
            pool: WorkerPool | None = None
            if config.quality.enabled:
                # Analyses run in worker processes; this loop only queues them and keeps
                # the queue's depth and the workers' outcomes in /metrics.
                # Under serve --workers N, worker 0 alone runs the analysis processes:
                # one pool per host, not one per ingest worker.
                sibling = app.get(workers.WORKER)
                first = sibling is None or sibling.index == 0
                count = worker_count(config.analysis) if first else 0
                pool = WorkerPool(config, manager.node_id, count, metrics) if count else None
                analysis = Analysis(
                    config.quality,
                    make_job_queue(config),
                    app[RECORDS],
                    app[DUMPS],
                    metrics,
                    manager.node_id,
                    locator=app.get(GEO),
                    lease_s=config.analysis.lease_s,
                    poll_s=config.analysis.poll_interval_s,
                    on_queued=pool.wake if pool is not None else None,
                )
                app[ANALYSIS] = analysis
                await analysis.start(runners=0, watch_depth=True)
                opened.push_async_callback(analysis.stop)
                if pool is None and first:
                    log.info("analysis.workers is 0: sessions are queued, analysed elsewhere")
                hooks.append(analysis)
            forwarding = make_forwarding(config, app[RECORDS], app[DUMPS], metrics, manager.node_id)
            if forwarding is not None:
                app[FORWARDING] = forwarding
                await forwarding.start()
                opened.push_async_callback(forwarding.stop)
                hooks.append(forwarding)
            await manager.start()  # crash recovery finishes through the hooks above
            opened.push_async_callback(manager.stop)  # no-op when on_shutdown drained
            if pool is not None:  # after the start: it resolves the node id they carry
                pool.node_id = manager.node_id
                await pool.start()  # they take what recovery queued at once
                opened.push_async_callback(pool.stop)
            yield

    async def geo(app: web.Application) -> AsyncIterator[None]:
        # A file that is no database of its kind: ConfigError naming the key, at start.
        locator = await asyncio.to_thread(open_locator, config.geo)
        if locator is None:
            yield
            return
        app[GEO] = locator
        try:
            yield
        finally:
            locator.close()

    async def retention(app: web.Application) -> AsyncIterator[None]:
        worker = app.get(workers.WORKER)
        if worker is not None and worker.index != 0:
            yield  # under serve --workers N, worker 0 sweeps the shared stores for all
            return
        async with retention_running(config.retention, app[RECORDS], app[DUMPS]):
            yield

    app.cleanup_ctx.append(geo)
    app.cleanup_ctx.append(resources)
    app.cleanup_ctx.append(retention)
    app.cleanup_ctx.append(rtcstats_api.uploads_ctx)  # after resources: needs the manager
    app.cleanup_ctx.append(api.downloads_ctx)
    app[INGEST] = _LazyIngest(config, app)
    app[DOORS] = front.Doors(app[INGEST].handler, config.limits.handshake_timeout_s)
    app.on_response_prepare.append(_served_by(app[DOORS]))

    @web.middleware
    async def upgrades_anywhere(request: web.Request, handler: Handler) -> web.StreamResponse:
        # A websocket upgrade the front door (front.py) took is ingest's, on any path;
        # one that reaches aiohttp was not one the front door takes (HTTP/1.0, no valid
        # key or version 13): refused here, never routed.
        if request.headers.get("Upgrade", "").lower() == "websocket":
            app[METRICS].refused.labels("bad_upgrade").inc()
            return error(
                400,
                "bad_upgrade",
                "not a websocket upgrade this server takes: GET, HTTP/1.1, "
                "Sec-WebSocket-Version 13 and a 16-byte Sec-WebSocket-Key",
            )
        return await handler(request)

    # Outside the upgrade middleware: with api.listen, the API port takes no upgrades.
    app.middlewares.append(ApiAccess(config.api, startup.api_listen(config)[1]).middleware)
    app.middlewares.append(upgrades_anywhere)
    api.add_routes(app)
    features.add_routes(app)
    rtcstats_api.add_routes(app)
    openapi.add_routes(app)
    viewer_routes.add_routes(app)
    ui.add_routes(app)
    return app


async def start_server(
    config: Config,
    listeners: startup.Listeners | None = None,
    worker: workers.WorkerInfo | None = None,
) -> web.AppRunner:
    """Check, bind, open, then listen (see startup.py); the caller owns the runner.

    ``worker``: this process is one of ``serve --workers N`` (see workers.py).

    ``listeners``: sockets ``startup.prepare`` bound already (``serve`` binds before
    importing this module); made here when not given. Every failure raises
    ``StartupError`` (or ``ConfigError``) after releasing what the steps before it
    took: sockets are closed and the stores opened so far are closed, so no thread of
    theirs keeps a failed process alive.
    """
    if listeners is None:
        listeners = await asyncio.to_thread(startup.prepare, config)
    try:
        app = build_app(config)
        if worker is not None:
            workers.attach(app, worker)
    except BaseException:
        listeners.close()
        raise
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=AccessLog,
        access_log=access_logger(config.logging.access),
        shutdown_timeout=config.server.shutdown_grace_s,
        # aiohttp closes a connection that has not sent a whole request within the
        # keep-alive timeout (and idle keep-alive ones): our slowloris limit.
        keepalive_timeout=config.limits.handshake_timeout_s,
        logger=HttpErrorLog(logging.getLogger("aiohttp.server"), app[METRICS]),
    )
    try:
        await runner.setup()
        if config.server.require_backends:
            problems = await api.backend_problems(app, config.metadata.timeout_s)
            if problems:
                raise startup.unreachable_backends(problems)
        listeners.listen()
        assert runner.server is not None  # made by setup()
        doors = app[DOORS]
        doors.http = runner.server
        for sock in listeners.public:
            await front.DoorSite(runner, sock, doors).start()
        for sock in listeners.private:  # api.listen: the API only, no upgrades
            await web.SockSite(runner, sock).start()
        if worker is not None:
            await workers.take_relayed(runner, worker, doors)
    except BaseException as exc:
        await _release(runner, listeners)
        if isinstance(exc, OSError | sqlite3.Error | StoreUnavailable):
            raise StartupError(_said(exc)) from exc
        raise
    log.info(
        "rtcstats-collector %s listening on %s, data in %s, analysis: %s",
        installed_version(),
        listeners.describe(),
        config.server.data_dir.resolve(),
        analysis_build(),
    )
    return runner


def _said(exc: BaseException) -> str:
    """An OS or store error in one line: the file it names and its words."""
    if isinstance(exc, OSError) and exc.strerror:
        cause = exc.strerror[:1].lower() + exc.strerror[1:]
        return f"{exc.filename}: {cause}" if exc.filename else cause
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


async def _release(runner: web.AppRunner, listeners: startup.Listeners) -> None:
    """Undo a failed start; a failure here must not hide the one being reported."""
    try:
        await runner.cleanup()
    except Exception:
        log.debug("cleanup after a failed start failed too", exc_info=True)
    listeners.close()


async def stop_server(runner: web.AppRunner) -> None:
    """Stop accepting, drain every session (clients get 1001), then release resources.

    Draining happens before aiohttp's own shutdown, which would otherwise drop the
    websockets without a close frame. A drain that overruns ``shutdown_grace_s``
    leaves the rest to crash recovery at the next start: nothing is lost.
    """
    app = runner.app
    for site in list(runner.sites):
        await site.stop()
    if MANAGER in app:
        try:
            await asyncio.wait_for(app[MANAGER].stop(), app[CONFIG].server.shutdown_grace_s)
        except TimeoutError:
            log.error("drain overran shutdown_grace_s; the rest is recovered at next start")
    ingest = app[INGEST].made if INGEST in app else None
    if ingest is not None:
        ingest.cut_all()
    await runner.cleanup()


async def serve_until_signalled(
    config: Config,
    listeners: startup.Listeners | None = None,
    worker: workers.WorkerInfo | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then drain. ``on_ready`` runs once listening (a
    worker tells its supervisor so)."""
    runner = await start_server(config, listeners, worker)
    if on_ready is not None:
        on_ready()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("signal received: draining sessions")
    finally:
        await stop_server(runner)


def _served_by(doors: front.Doors) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    async def served(request: web.Request, response: web.StreamResponse) -> None:
        doors.served_by_http(request, response)

    return served


class _LazyIngest:
    """The ingest handler, made once the manager exists (after startup)."""

    def __init__(self, config: Config, app: web.Application) -> None:
        self.config = config
        self.app = app
        self.made: IngestHandler | None = None
        self.access = ClientAccess(config.auth)  # key files are read (and checked) at start

    def handler(self) -> IngestHandler | None:
        if self.made is None:
            app = self.app
            if MANAGER not in app:
                return None
            worker = app.get(workers.WORKER)
            self.made = IngestHandler(
                self.config,
                app[MANAGER],
                app[METRICS],
                app[SPOOL],
                self.access,
                app.get(GEO),
                WorkerRelay(worker, self.config, app[METRICS]) if worker else None,
                ((workers.WORKER_HEADER, str(worker.index)),) if worker else (),
            )
        return self.made


INGEST = web.AppKey("ingest", _LazyIngest)
DOORS = web.AppKey("doors", front.Doors)
