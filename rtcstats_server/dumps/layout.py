"""The rtcstats dump layout: a magic line, a metadata line, events, a close line."""

from __future__ import annotations

from typing import Any

import orjson

MAGIC = "RTCStatsDump"


def metadata_line(meta: dict[str, Any]) -> str:
    """The second line: what existing rtcstats tools read before the events."""
    return orjson.dumps({k: v for k, v in meta.items() if v is not None}).decode()


def close_line(code: int, when: int) -> str:
    """The last line of a session's dump. ``when`` follows the dump's time convention:
    absolute epoch ms, or (rtcstats-js dumps, relative times) ms since the last event."""
    return orjson.dumps(["close", None, code, when]).decode()
