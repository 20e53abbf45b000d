"""Builds the aiohttp application: one port for ingest, the API, health and metrics.

Shared resources (stores, the session manager, metrics) are created at startup and
closed at cleanup, and hang off the app, so a test builds an app with its own
config and nothing leaks between apps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from rtcstats_server import api
from rtcstats_server.app_keys import CONFIG, DUMPS, MANAGER, METRICS, RECORDS
from rtcstats_server.config import Config
from rtcstats_server.ingest.handler import IngestHandler
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.embedded import EmbeddedSessionStore
from rtcstats_server.metrics import Metrics
from rtcstats_server.sessions import SessionManager
from rtcstats_server.storage.base import DumpStore
from rtcstats_server.storage.local import LocalDumpStore


def make_session_store(config: Config) -> SessionStore:
    return EmbeddedSessionStore(config.embedded_path)


def make_dump_store(config: Config) -> DumpStore:
    return LocalDumpStore(config.dumps_dir)


def build_app(config: Config) -> web.Application:
    metrics = Metrics()
    app = web.Application(middlewares=[api.json_errors], client_max_size=1 << 20)
    app[CONFIG] = config
    app[METRICS] = metrics
    app[RECORDS] = make_session_store(config)
    app[DUMPS] = make_dump_store(config)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        await app[RECORDS].open()
        await app[DUMPS].open()
        manager = SessionManager(config, app[DUMPS], app[RECORDS], metrics)
        app[MANAGER] = manager
        await manager.start()
        yield
        await manager.stop()  # no-op when on_shutdown already drained
        await app[DUMPS].close()
        await app[RECORDS].close()

    async def drain(app: web.Application) -> None:
        await app[MANAGER].stop()

    app.cleanup_ctx.append(resources)
    app.on_shutdown.append(drain)
    ingest = _LazyIngest(config)

    @web.middleware
    async def upgrades_anywhere(request: web.Request, handler: api.Handler) -> web.StreamResponse:
        # Clients append page paths or meeting names: any path can be an upgrade.
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await ingest(request)
        return await handler(request)

    app.middlewares.append(upgrades_anywhere)
    api.add_routes(app)
    return app


class _LazyIngest:
    """The ingest handler, made once the manager exists (after startup)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.handler: IngestHandler | None = None

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if self.handler is None:
            app = request.app
            self.handler = IngestHandler(self.config, app[MANAGER], app[METRICS])
        return await self.handler(request)
