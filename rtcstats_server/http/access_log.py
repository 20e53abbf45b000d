"""The access log (``logging.access: true``): one line per API and viewer request.

Off by default: session lines already say what clients streamed, and at scale a line
per scrape or health check is noise. On, it answers "who called what, how did it end,
how long did it take". Websocket upgrades are left out (sessions have their own
lines). Nothing that opens the API or a session goes in: headers are never logged
(so no ``Authorization``), and query parameters that carry a credential (a viewer
link's ``sig``, a client's ``rtcstats-token``, however percent-encoded) are cut from
the logged path. The client address is masked like the records' when
``privacy.obfuscate_ip_addresses`` is on. With ``logging.format: json`` the values
are top-level keys of the line.
"""

from __future__ import annotations

import logging
from typing import Final
from urllib.parse import unquote_plus

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from rtcstats_server.dumps.privacy import mask_remote
from rtcstats_server.http.keys import CONFIG
from rtcstats_server.ingest.access import TOKEN_PARAM
from rtcstats_server.logs import ACCESS_LOGGER, LOG_FIELDS

#: Query parameters whose values are credentials.
SECRET_PARAMS: Final = frozenset({"sig", TOKEN_PARAM})
_MAX_AGENT: Final = 256


def redacted_target(raw_path: str) -> str:
    """The request target as sent, without the parameters that carry credentials."""
    path, mark, query = raw_path.partition("?")
    if not mark:
        return path
    kept = [
        pair
        for pair in query.split("&")
        if pair and unquote_plus(pair.partition("=")[0]).lower() not in SECRET_PARAMS
    ]
    return path + ("?" + "&".join(kept) if kept else "")


class AccessLog(AbstractAccessLogger):
    """aiohttp's access logger hook (``AppRunner(access_log_class=...)``)."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return
        remote = request.remote or ""
        config = request.app.get(CONFIG) if isinstance(request, web.Request) else None
        if remote and config is not None and config.privacy.obfuscate_ip_addresses:
            remote = mask_remote(remote)
        target = redacted_target(request.raw_path)
        agent = request.headers.get("User-Agent", "")[:_MAX_AGENT]
        duration_ms = round(time * 1000, 1)
        # On the wire, headers included: also right for a download the client cut short.
        sent = request.writer.output_size
        self.logger.info(
            '%s "%s %s" %d %d B %.1f ms "%s"',
            remote or "-",
            request.method,
            target,
            response.status,
            sent,
            duration_ms,
            agent,
            extra={
                LOG_FIELDS: {
                    "event": "http_request",
                    "remote": remote or None,
                    "method": request.method,
                    "path": target,
                    "status": response.status,
                    "bytes_sent": sent,
                    "duration_ms": duration_ms,
                    "user_agent": agent or None,
                }
            },
        )


def access_logger(enabled: bool) -> logging.Logger | None:
    """The logger to give aiohttp, or None (no access log) when it is off."""
    return logging.getLogger(ACCESS_LOGGER) if enabled else None
