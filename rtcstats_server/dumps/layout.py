"""The rtcstats dump layout: a magic line, a metadata line, events, a close line.

What the lines of a dump mean, beyond their bytes: the header, which dialect wrote
the events (the metadata's ``clientProtocol``) and so how their times are written,
who the backend pushers are, and the session's closing line. The live writer, crash
repair, the dialects' close lines, the encoders, the reader and replay all ask here.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

import orjson

MAGIC: Final = "RTCStatsDump"
#: The ``fileFormat`` of the rtcstats-js dialect, the one rtcstats.com reads.
FILE_FORMAT: Final = 3
#: The method of the line that ends a session, ``["close", null, <code>, <time>]``.
CLOSE_METHOD: Final = "close"

#: The jitsi browser clients (``@jitsi/rtcstats``): acknowledged, resumable.
JITSI_CLIENTS: Final = frozenset({"3.1_STANDARD", "3.1_LEGACY"})
#: The jitsi client that sends W3C getStats reports (``3.1_LEGACY``: Chrome's legacy ones).
STANDARD_STATS_CLIENT: Final = "3.1_STANDARD"
#: The jitsi backend components that push their statistics as 3.1 envelopes.
PUSHER_APPS: Final = ("JVB", "JICOFO", "JIBRI", "JIGASI")
#: A pusher's protocol: a version of its own, then the component (``2.1_JVB``).
PUSHER_PROTOCOL: Final = re.compile(r"^[0-9]+(\.[0-9]+)?_(" + "|".join(PUSHER_APPS) + r")$")

#: How a dialect writes getStats (and its times): see getstats.py.
Scheme = Literal["rtcstats-js", "jitsi", "2015"]


def metadata_line(meta: dict[str, Any]) -> str:
    """The second line: what existing rtcstats tools read before the events."""
    return orjson.dumps({k: v for k, v in meta.items() if v is not None}).decode()


def header_lines(meta: dict[str, Any]) -> tuple[str, str]:
    """The two lines every dump we write starts with."""
    return MAGIC, metadata_line(meta)


def scheme_of(protocol: object, default: Scheme) -> Scheme:
    """The scheme of a dump whose metadata names ``protocol`` (``default`` if none)."""
    if isinstance(protocol, str):
        if protocol.startswith("rtcstats#"):
            return "rtcstats-js"
        if protocol == "2.0":
            return "2015"
        return "jitsi"
    return default


def default_protocol(scheme: Scheme) -> str:
    """The protocol to name for events of ``scheme`` when their dump names none."""
    return {"rtcstats-js": "rtcstats#5.0", "2015": "2.0", "jitsi": "3.1_STANDARD"}[scheme]


def is_jitsi_protocol(protocol: str) -> bool:
    """A 3.1 dialect: a jitsi browser client or a backend pusher (envelopes on the wire)."""
    return protocol in JITSI_CLIENTS or bool(PUSHER_PROTOCOL.match(protocol))


def pusher_protocol(app: object) -> str | None:
    """``3.1_<APP>`` for an identity's ``applicationName`` that names a pusher."""
    if isinstance(app, str) and app.upper() in PUSHER_APPS:
        return f"3.1_{app.upper()}"
    return None


def close_line(code: int, at_ms: float | None, *, relative: bool, last_ms: float | None) -> str:
    """The line that ends a session closed with ``code`` at ``at_ms`` (epoch ms).

    Its time follows the dump's convention: absolute epoch ms, or for rtcstats-js
    (``relative``) the milliseconds since the event before it, at ``last_ms``. What is
    not known is written as 0.
    """
    when = 0
    if at_ms is not None:
        if not relative:
            when = round(at_ms)
        elif last_ms is not None:
            when = max(0, round(at_ms - last_ms))
    return orjson.dumps([CLOSE_METHOD, None, code, when]).decode()


def is_session_close(entry: object) -> bool:
    """Whether a parsed line is a session's close (a peer connection's names its pc)."""
    return (
        type(entry) is list
        and len(entry) >= 3
        and entry[0] == CLOSE_METHOD
        and entry[1] is None
        and type(entry[2]) is int
    )
