"""Malformed HTTP requests: answered 400 by aiohttp, counted and logged in one line.

aiohttp refuses a request line or header over 8190 bytes (or any unparsable request)
with a 400 and logs an ERROR with a full traceback through the logger its server was
given. On a public port that is noise an attacker controls, so the server gets this
adapter: a parse error becomes a metric (``rtcstats_connections_refused_total
{reason="bad_http_request"}``) and a DEBUG line; every other record passes unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from rtcstats_server.metrics import Metrics

REASON = "bad_http_request"


class HttpErrorLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    def __init__(self, logger: logging.Logger, metrics: Metrics) -> None:
        super().__init__(logger, {})
        self.metrics = metrics

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            self.metrics.refused.labels(REASON).inc()
            peer = args[0] if args else "?"
            self.logger.debug("bad HTTP request from %s: %s", peer, exc.message)
            return
        super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs
