"""``check-config --connect``: can this configuration reach what it names?

A deployment fails on its first session if the bucket, the database or the upstream
cannot be reached; this answers before users arrive. Each backend is opened as the
server opens it and asked its own ``ping()``, so the check proves what the server
will do, not a look-alike probe. The upstream has no ping: any HTTP answer from its
host (even 404 or 405) proves the network path and TLS; only a transport failure
counts as unreachable, because we must not spend a real upload to find out.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from rtcstats_server.config import Config
from rtcstats_server.exceptions import RtcstatsError
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.embedded import EmbeddedSessionStore
from rtcstats_server.metadata.mongodb import MongoSessionStore
from rtcstats_server.storage.base import DumpStore


@dataclass(frozen=True)
class Check:
    name: str
    #: Where it points, without credentials.
    target: str
    #: None when reachable; otherwise what went wrong.
    error: str | None = None
    skipped: bool = False

    @property
    def line(self) -> str:
        outcome = "skipped" if self.skipped else "ok" if self.error is None else "FAILED"
        detail = f": {self.error}" if self.error else ""
        return f"{self.name:<9} {self.target}: {outcome}{detail}"


def _host_of(uri: str) -> str:
    """scheme://host[:port] of a URI, without user info or path."""
    parts = urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}"


def _problem(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__


async def _probe_store(store: SessionStore | DumpStore, limit_s: float) -> str | None:
    try:
        async with asyncio.timeout(limit_s):
            await store.open()
            await store.ping()
    except (RtcstatsError, OSError, TimeoutError) as exc:
        return _problem(exc) if not isinstance(exc, TimeoutError) else f"no answer in {limit_s}s"
    finally:
        try:
            async with asyncio.timeout(limit_s):
                await store.close()
        except (RtcstatsError, OSError, TimeoutError):
            pass
    return None


async def check_storage(config: Config, limit_s: float) -> Check:
    # Imported here: the object store backend loads its native library.
    from rtcstats_server.storage.factory import make_dump_store

    settings = config.storage
    if settings.backend == "local":
        target = f"local {config.dumps_dir}"
    else:
        target = f"{settings.backend} bucket {settings.bucket!r}"
        if settings.endpoint:
            target += f" at {_host_of(settings.endpoint)}"
    try:
        store = make_dump_store(config)  # without records: opens, never uploads
    except RtcstatsError as exc:
        return Check("storage", target, _problem(exc))
    return Check("storage", target, await _probe_store(store, limit_s))


async def check_metadata(config: Config, limit_s: float) -> Check:
    meta = config.metadata
    store: SessionStore
    if meta.backend == "mongodb":
        uri = meta.uri.get_secret_value()
        target = f"mongodb {_host_of(uri)} {meta.database}.{meta.collection}"
        # The bare store, not the spooling wrapper: a spool would hide the outage.
        store = MongoSessionStore(uri, meta.database, meta.collection, meta.timeout_s)
    else:
        target = f"embedded {config.embedded_path}"
        store = EmbeddedSessionStore(config.embedded_path)
    return Check("metadata", target, await _probe_store(store, limit_s))


async def check_upstream(config: Config, limit_s: float) -> Check:
    upstream = config.forwarders.rtcstats_com
    if not upstream.enabled:
        return Check("upstream", "rtcstats.com forwarder disabled (no token)", skipped=True)
    target = f"rtcstats_com {_host_of(upstream.endpoint)}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit_s)) as http,
            http.options(upstream.endpoint, allow_redirects=False) as response,
        ):
            await response.release()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        problem = f"no answer in {limit_s}s" if isinstance(exc, TimeoutError) else _problem(exc)
        return Check("upstream", target, problem)
    return Check("upstream", target)


async def check_all(config: Config, limit_s: float | None = None) -> list[Check]:
    """Every backend, checked at once; each bounded by ``limit_s`` (default: the
    metadata timeout plus a margin, so the driver's own error wins the race)."""
    limit = limit_s if limit_s is not None else config.metadata.timeout_s + 5.0
    return list(
        await asyncio.gather(
            check_storage(config, limit),
            check_metadata(config, limit),
            check_upstream(config, limit),
        )
    )
