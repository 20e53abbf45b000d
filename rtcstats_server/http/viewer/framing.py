"""Who tried to frame the viewer without being allowed to: logged once, always counted.

The browser enforces ``frame-ancestors`` and shows a blank frame; the server never
learns of it, and the operator of a dashboard sees nothing but the blank. A framed
navigation says what it is (``Sec-Fetch-Dest: iframe``) and, by default, who frames it
(the dashboard's origin as ``Referer``; ``Origin`` when the browser sends one). When
that origin is neither ours nor one of ``viewer.authorized_domains``, the request is
counted in ``rtcstats_viewer_frame_refused_total`` and the origin logged the first
time it is seen (the log names the key to set). The origins remembered are bounded:
a stranger can send any header, so at most :data:`REMEMBERED` are kept (least
recently seen dropped first) and only well-formed ones are ever logged. A frame whose
dashboard sends no referrer cannot be attributed and is not counted.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from rtcstats_server.metrics import Metrics

log = logging.getLogger(__name__)

#: Distinct refused origins remembered (each logged once while remembered).
REMEMBERED: Final = 1024
_FRAMED: Final = frozenset({"iframe", "frame"})
_HOST: Final = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?|\[[0-9a-f:.]{2,45}\]")
_DEFAULT_PORT: Final = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        """host[:port] as a Host header names it (the port only when not the default)."""
        default = _DEFAULT_PORT[self.scheme] == self.port
        return self.host if default else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.netloc}"


def parse_origin(value: str | None) -> Origin | None:
    """The origin of a URL or origin header value; None when it is none we can name
    (absent, ``null``, another scheme, a host with characters no host has)."""
    if not value or len(value) > 2048 or not value.isascii():
        return None
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in _DEFAULT_PORT or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if not _HOST.fullmatch(host):
        return None
    return Origin(scheme, host, port if port is not None else _DEFAULT_PORT[scheme])


def matches(source: str, origin: Origin) -> bool:
    """Whether a ``viewer.authorized_domains`` entry admits ``origin`` as CSP does:
    an ``http:`` source also admits https, ``*.`` admits subdomains (not the domain
    itself), a source without port admits the scheme's default port only."""
    scheme, _, rest = source.lower().partition("://")
    if scheme != origin.scheme and not (scheme == "http" and origin.scheme == "https"):
        return False
    host, port_text = rest, ""
    if not rest.endswith("]") and ":" in rest:
        host, _, port_text = rest.rpartition(":")
    if host.startswith("*."):
        if not origin.host.endswith(host[1:]):
            return False
    elif host != origin.host:
        return False
    if port_text:
        return port_text.isdigit() and int(port_text) == origin.port
    return origin.port == _DEFAULT_PORT[origin.scheme]


class FramingWatch:
    """Counts and logs framing by origins that ``frame-ancestors`` refuses."""

    def __init__(self, authorized: Iterable[str], base_url: str, metrics: Metrics) -> None:
        self.authorized = tuple(authorized)
        self.own = parse_origin(base_url)
        self.metrics = metrics
        self._seen: OrderedDict[str, None] = OrderedDict()

    def refused_origin(self, headers: Mapping[str, str], host: str | None) -> Origin | None:
        """The origin framing this request that the policy refuses, if any and known."""
        if headers.get("Sec-Fetch-Dest", "").lower() not in _FRAMED:
            return None
        if headers.get("Sec-Fetch-Site", "").lower() == "same-origin":
            return None
        origin = parse_origin(headers.get("Origin")) or parse_origin(headers.get("Referer"))
        if origin is None:
            return None
        if origin == self.own or (host is not None and origin.netloc == host.lower()):
            return None  # 'self': our public origin, or the host this request was sent to
        if any(matches(source, origin) for source in self.authorized):
            return None
        return origin

    def observe(self, headers: Mapping[str, str], host: str | None) -> None:
        origin = self.refused_origin(headers, host)
        if origin is None:
            return
        self.metrics.viewer_frame_refused.inc()
        name = str(origin)
        if name in self._seen:
            self._seen.move_to_end(name)
            return
        self._seen[name] = None
        if len(self._seen) > REMEMBERED:
            self._seen.popitem(last=False)
        log.warning(
            "viewer: %s tried to frame the viewer and the browser refused it (blank frame); "
            "add it to viewer.authorized_domains if it is your dashboard",
            name,
        )
