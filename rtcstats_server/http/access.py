"""Who may read: bearer tokens with scopes, loopback-only without them, CORS, and the
split between the public port and ``api.listen``.

Tokens are configured as SHA-256 hashes, so the config file is no credential; each
request's token is hashed and compared in constant time against every configured
hash. ``read`` opens the GET routes (sessions, dumps, metrics); ``upload`` also opens
``POST /v1.0/upload`` (what a backend that sends dumps needs, and no more); ``admin``
also opens the ones that change something (forward, delete). With no token configured the API
answers clients on this host only: a request relayed by a proxy (it carries any header
of :data:`PROXY_HEADERS`) is not one, even when the proxy is local.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping
from typing import Final

from aiohttp import web

from rtcstats_server.config import ApiConfig
from rtcstats_server.http.errors import Handler, error
from rtcstats_server.http.ui import is_ui
from rtcstats_server.http.workers import relayed_address

#: Paths of the API proper; /healthz and /readyz stay open on every port.
PROTECTED_PREFIXES = ("/v1/", "/v1.0/", "/metrics")
_READ_METHODS = frozenset({"GET", "HEAD"})
#: POST routes that change nothing (they sign a viewer link): the read scope opens them.
_READ_POSTS = re.compile(r"^/v1/sessions/[^/]+/viewer-url$")
#: (method, path) a token of the ``upload`` scope may use beyond the read routes.
_UPLOAD_ROUTES = frozenset({("POST", "/v1.0/upload")})
#: A token listed twice with different scopes gets the widest.
_RANK = {"read": 0, "upload": 1, "admin": 2}


def hash_token(token: str) -> str:
    """What ``api.tokens[].sha256`` holds for ``token``.

    A header's bytes that are not UTF-8 reach us as lone surrogates; they are hashed as
    the bytes that were sent (and match no configured token) instead of raising.
    """
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def protected(path: str) -> bool:
    return path.startswith(PROTECTED_PREFIXES) or path == "/v1"


def _local_port(request: web.Request) -> int | None:
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    return sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else None


#: Headers by which a proxy names the client it relays (RFC 7239 ``Forwarded``, ``Via``,
#: the ``X-Forwarded-*`` family, and what nginx, CDNs and load balancers use instead).
#: A request with any of them came through a proxy: its TCP peer being this host says
#: nothing about who sent it. Lower case.
PROXY_HEADERS: Final = frozenset(
    {
        "forwarded",
        "via",
        "x-real-ip",
        "x-client-ip",
        "client-ip",
        "cf-connecting-ip",
        "cf-connecting-ipv6",
        "true-client-ip",
        "fastly-client-ip",
        "akamai-client-ip",
        "x-cluster-client-ip",
        "x-original-forwarded-for",
        "x-envoy-external-address",
        "x-proxyuser-ip",
        "x-azure-clientip",
        "x-appengine-user-ip",
    }
)
#: ``X-Forwarded``, ``X-Forwarded-For``, ``-Host``, ``-Proto``, ``-Port``, ``-Prefix``, ...
_PROXY_HEADER_PREFIX: Final = "x-forwarded"


def relayed(headers: Mapping[str, str]) -> bool:
    """Whether a proxy relayed the request (see :data:`PROXY_HEADERS`)."""
    for name in headers:
        lowered = name.lower()
        if lowered in PROXY_HEADERS or lowered.startswith(_PROXY_HEADER_PREFIX):
            return True
    return False


def _from_loopback(request: web.Request) -> bool:
    if relayed(request.headers):
        return False
    # relayed by a sibling worker (serve --workers): the address it was sent from
    remote = relayed_address(request) or request.remote or ""
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a unix socket has no address: not ours to open


class ApiAccess:
    def __init__(self, config: ApiConfig, api_port: int | None) -> None:
        self.tokens = [(token.sha256, token.scope, token.name) for token in config.tokens]
        self.cors = set(config.cors_origins)
        #: When set, protected paths answer only on this local port and ingest never does.
        self.api_port = api_port

    def scope_of(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = hash_token(token.strip())
        found = None
        for sha256, scope, _name in self.tokens:  # no early exit: timing says nothing
            if hmac.compare_digest(digest, sha256) and _RANK[scope] >= _RANK.get(found or "", -1):
                found = scope
        return found

    def _cors_headers(self, request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if not origin or not self.cors or ("*" not in self.cors and origin not in self.cors):
            return {}
        return {
            "Access-Control-Allow-Origin": "*" if "*" in self.cors else origin,
            "Access-Control-Allow-Headers": "Authorization",
            "Access-Control-Allow-Methods": "GET, POST, DELETE",
            "Vary": "Origin",
        }

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if self.api_port is not None:
            on_api_port = _local_port(request) == self.api_port
            # the sessions page goes where the API it calls is
            api_only = protected(path) or is_ui(path)
            if (upgrade and on_api_port) or (not upgrade and api_only and not on_api_port):
                return error(404, "not_found", "not served on this port")
        if upgrade or not protected(path):
            return await handler(request)  # ingest (any path) and health: open
        cors = self._cors_headers(request)
        if request.method == "OPTIONS" and cors:
            return web.Response(status=204, headers=cors)
        refusal = self._refusal(request)
        if refusal is not None:
            refusal.headers.update(cors)
            return refusal
        response = await handler(request)
        if cors and not response.prepared:
            response.headers.update(cors)
        return response

    def _refusal(self, request: web.Request) -> web.Response | None:
        if not self.tokens:
            if _from_loopback(request):
                return None
            return error(
                403, "forbidden", "no API token is configured: the API answers this host only"
            )
        scope = self.scope_of(request)
        if scope is None:
            response = error(401, "unauthorized", "send Authorization: Bearer <token>")
            response.headers["WWW-Authenticate"] = 'Bearer realm="rtcstats"'
            return response
        if request.method == "POST" and _READ_POSTS.match(request.path):
            return None  # every scope includes read
        if request.method not in _READ_METHODS and scope != "admin":
            if scope == "upload" and (request.method, request.path) in _UPLOAD_ROUTES:
                return None
            return error(403, "forbidden", "this route needs a token with the admin scope")
        return None
