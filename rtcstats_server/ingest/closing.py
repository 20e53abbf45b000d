"""The reason of the close frame the collector answers a client's close with.

It names the session the connection was stored in (``session <id>``), so a client
learns the collector's own session id without API access: ``rtcstats-server replay``
prints it for every connection, and an operator looks the record up by it. Real
rtcstats clients read only the close code; the reason is theirs to ignore.
"""

from __future__ import annotations

import re
from typing import Final

_REASON: Final = re.compile(r"^session ([0-9a-f]{32})$")


def close_reason(session_id: str) -> bytes:
    return f"session {session_id}".encode()


def session_in_reason(reason: str | None) -> str | None:
    """The session id a close reason of ours names; None for any other reason."""
    match = _REASON.match(reason or "")
    return match.group(1) if match else None
