"""aiohttp's error log, without the tracebacks strangers and impatient clients cause.

aiohttp refuses a request line or header over 8190 bytes (or any unparsable request)
with a 400 and logs an ERROR with a full traceback through the logger its server was
given. On a public port that is noise an attacker controls, so the server gets this
adapter: a parse error becomes a metric (``rtcstats_connections_refused_total
{reason="bad_http_request"}``) and a DEBUG line. Likewise a client that goes away
in the middle of a response (a cancelled dump download) is not an error of ours: it
becomes ``rtcstats_http_responses_aborted_total`` and a DEBUG line instead of a
30-line traceback. Every other record passes unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from rtcstats_server.metrics import Metrics

REASON = "bad_http_request"
_log = logging.getLogger(__name__)


def client_went_away(metrics: Metrics, peer: object, exc: BaseException) -> None:
    """A response the client stopped reading (a cancelled download): counted, and one
    DEBUG line. Handlers that stream call it themselves; the adapter below for the rest."""
    metrics.http_aborted.inc()
    _log.debug("client %s went away during the response: %s", peer, exc)


class HttpErrorLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    def __init__(self, logger: logging.Logger, metrics: Metrics) -> None:
        super().__init__(logger, {})
        self.metrics = metrics

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, tuple):
            exc = exc[1]
        peer = args[0] if args else "?"
        if isinstance(exc, HttpProcessingError):
            self.metrics.refused.labels(REASON).inc()
            self.logger.debug("bad HTTP request from %s: %s", peer, exc.message)
            return
        if isinstance(exc, ConnectionResetError | BrokenPipeError):
            client_went_away(self.metrics, peer, exc)
            return
        super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs
