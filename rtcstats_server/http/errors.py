"""Every error answer of the HTTP side, in one module.

One middleware gives each error its JSON body: ``{error, detail}`` everywhere, and
the rtcstats.com shape ``{error: <message>, errorCode: <code>}`` under ``/v1.0/``,
wherever the error was decided (token checks, routing, stores, handlers). A
``/v1.0/`` error is first given the ``{error, detail}`` answer and then reshaped,
so both APIs map our exceptions to the same statuses.

Malformed HTTP requests never reach a handler: aiohttp refuses a request line or
header over 8190 bytes (or any unparsable request) with a 400 and logs an ERROR with
a full traceback through the logger its server was given. On a public port that is
noise an attacker controls, so the server gets an adapter: a parse error becomes a
metric (``rtcstats_connections_refused_total{reason="bad_http_request"}``) and a
DEBUG line. Likewise a client that goes away in the middle of a response (a cancelled
dump download) is not an error of ours: it becomes
``rtcstats_http_responses_aborted_total`` and a DEBUG line instead of a 30-line
traceback. Every other record passes unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from rtcstats_server.exceptions import NotFound, ProtocolViolation, StoreUnavailable, UploadRefused
from rtcstats_server.metrics import Metrics

REASON = "bad_http_request"
_log = logging.getLogger(__name__)
#: Where the rtcstats.com-compatible API lives, and answers errors in its own shape.
PREFIX: Final = "/v1.0/"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error(status: int, code: str, detail: str) -> web.Response:
    """Our API's error body: ``{error: <code>, detail: <what went wrong>}``."""
    return json_response({"error": code, "detail": detail}, status)


def refusal(status: int, error_code: str, message: str) -> web.Response:
    """The rtcstats.com API's error body: ``{error: <message>, errorCode: <code>}``."""
    return json_response({"error": message, "errorCode": error_code}, status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one error middleware: ``{error, detail}``, or under /v1.0/ that API's shape."""
    if not request.path.startswith(PREFIX):
        return await _detail_shape(request, handler)
    try:
        response = await _detail_shape(request, handler)
    except UploadRefused as exc:
        return refusal(exc.status, exc.error_code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return refusal(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
    if response.status < 400 or not isinstance(response, web.Response):
        return response
    body = response.body
    parsed = orjson.loads(body) if isinstance(body, bytes) and body[:1] == b"{" else None
    if isinstance(parsed, dict) and "errorCode" not in parsed:
        code = str(parsed.get("error") or "error")
        message = str(parsed.get("detail") or code)
        reshaped = refusal(response.status, code, message)
        for name in ("WWW-Authenticate", "Retry-After", "Access-Control-Allow-Origin", "Vary"):
            if name in response.headers:
                reshaped.headers[name] = response.headers[name]
        return reshaped
    return response


async def _detail_shape(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Our exceptions, and aiohttp's non-JSON HTTP errors, as ``{error, detail}``."""
    try:
        return await handler(request)
    except ProtocolViolation as exc:
        return error(400, exc.reason, exc.detail)
    except NotFound as exc:
        return error(404, "not_found", str(exc))
    except StoreUnavailable as exc:
        return error(503, "store_unavailable", str(exc))
    except web.HTTPException as exc:
        if exc.status >= 400 and not exc.content_type.startswith("application/json"):
            return error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        raise


def client_gone(request: web.Request, exc: ConnectionError) -> bool:
    """Whether ``exc``, raised while answering ``request``, is its client going away:
    a reset or broken pipe (aiohttp raises ``ClientConnectionResetError`` writing to a
    closed connection), or aiohttp's plain ``ConnectionError("Connection lost")`` when
    the connection closed while the response waited for the client to read (a large
    download, the socket buffers full). Another connection error (a store's) is not."""
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return True
    transport = request.transport
    return transport is None or transport.is_closing()


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
        # A plain ConnectionError is aiohttp's "Connection lost" (client_gone).
        if isinstance(exc, ConnectionResetError | BrokenPipeError) or type(exc) is ConnectionError:
            client_went_away(self.metrics, peer, exc)
            return
        super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs
