"""The event loop ``serve`` runs on: uvloop's where it is installed, unless configured off.

uvloop runs the same asyncio code on libuv, with transports written in Cython. Since
ingest reads websockets on its own protocol (``ingest/websocket.py``), most of a
message's trip is transport callbacks, which is where uvloop saves: about 15 % of
the CPU per message on the rtcstats-js load of ``bench/ingest`` (bench/README.md).
It is a dependency on Linux and macOS; elsewhere, or with ``server.uvloop: false``,
the standard loop runs, and the start log says which one did.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
from collections.abc import Callable

from rtcstats_server.config import Config

log = logging.getLogger(__name__)


def loop_factory(config: Config) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """The loop factory for ``asyncio.Runner`` (None: the standard one) and its name."""
    if not config.server.uvloop:
        return None, "asyncio (server.uvloop is off)"
    try:
        import uvloop
    except ImportError:
        return None, "asyncio (uvloop is not installed on this platform)"
    return uvloop.new_event_loop, f"uvloop {importlib.metadata.version('uvloop')}"


def event_loop(config: Config) -> asyncio.Runner:
    """A runner on the configured loop (use it as a context manager)."""
    factory, name = loop_factory(config)
    log.info("event loop: %s", name)
    return asyncio.Runner(loop_factory=factory)
