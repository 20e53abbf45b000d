"""What ``check-config`` (and the log at startup) warns about the viewer's settings.

Neither is an error: a collector tried on a laptop rightly links to 127.0.0.1 and is
framed by nobody. In production both make links that fail in a way nobody sees: a
record's ``viewer_url`` that points at the loopback address opens nothing on a
support engineer's machine, and without ``authorized_domains`` every dashboard's frame
stays blank (the browser refuses it; only ``rtcstats_viewer_frame_refused_total``
tells).
"""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import urlsplit

from rtcstats_server.config import Config
from rtcstats_server.http.viewer.signing import public_base_url

#: ``server.host`` values that listen on every interface.
_ALL_INTERFACES: Final = frozenset({"", "0.0.0.0", "::", "[::]"})


def _loopback(host: str) -> bool:
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def viewer_warnings(config: Config) -> list[tuple[str, str]]:
    """(key, problem) for each setting of the viewer that makes its links fail silently."""
    if not config.viewer.enabled:
        return []
    found: list[tuple[str, str]] = []
    base = public_base_url(config)
    host = urlsplit(base).hostname or ""
    if _loopback(host) and config.server.host in _ALL_INTERFACES:
        how = "is" if config.viewer.public_base_url else "defaults to"
        found.append(
            (
                "viewer.public_base_url",
                f"{how} {base}, a loopback address, while the server listens on all "
                f"interfaces (server.host {config.server.host!r}): viewer links in records "
                "open only on this machine; set it to the URL browsers reach this server at",
            )
        )
    if not config.viewer.authorized_domains:
        found.append(
            (
                "viewer.authorized_domains",
                "is empty: no dashboard can frame the viewer (the frame stays blank); list "
                "the origins that embed it, e.g. https://dash.example.com",
            )
        )
    return found
