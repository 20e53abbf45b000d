"""The rtcstats dump layout: a magic line, a metadata line, events, a close line."""

from __future__ import annotations

from typing import Any

import orjson

MAGIC = "RTCStatsDump"


def metadata_line(meta: dict[str, Any]) -> str:
    """The second line: what existing rtcstats tools read before the events."""
    return orjson.dumps({k: v for k, v in meta.items() if v is not None}).decode()
