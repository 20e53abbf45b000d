"""3.1 envelopes ``{statsSessionId, type, data}``: the dump line each one carries.

Jitsi clients and backend pushers wrap every event in an envelope. What is stored is
the line inside: a ``stats-entry``'s ``data`` is a JSON string kept as it was sent;
an ``identity``'s ``data`` is the array ``["identity", null, {...}, ts, seq]`` (from
browsers) or the bare object (from pushers, stored in that array form). The other
types carry nothing to store. The websocket decoder (dialects/jitsi.py), the reader
of envelope files, uploads and replay all open envelopes here, so they agree on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from rtcstats_server.exceptions import ProtocolViolation

STATS_ENTRY: Final = "stats-entry"
IDENTITY: Final = "identity"
KEEPALIVE: Final = "keepalive"
CLOSE: Final = "close"
#: The server's acknowledgement (``{"type": "sn", "body": {"value", "state"}}``).
SN: Final = "sn"
#: Every envelope type.
TYPES: Final = frozenset({IDENTITY, STATS_ENTRY, KEEPALIVE, CLOSE, SN})
#: What a client sends while it streams (``close`` ends it).
SENT_TYPES: Final = frozenset({IDENTITY, STATS_ENTRY, KEEPALIVE})


def is_envelope(value: object) -> bool:
    """Whether a parsed JSON value is an envelope (a file of them is one per line)."""
    return isinstance(value, dict) and str(value.get("type")) in TYPES


def _wrong_shape(detail: str) -> ProtocolViolation:
    return ProtocolViolation("wrong_shape", detail)


def open_envelope(envelope: object, clock: Callable[[], float] | None = None) -> str | None:
    """The dump line ``envelope`` carries, as it is stored; None for control types.

    A stats-entry's string is kept byte for byte unless it spans lines (it is then
    re-encoded on one). A pusher's identity object gets the time ``clock()`` gives
    (epoch ms, the moment it arrived), or without a clock its own ``timestamp``.
    Raises ``ProtocolViolation`` (reasons ``wrong_shape``, ``invalid_json``) for an
    envelope that carries something unreadable.
    """
    if type(envelope) is not dict:
        raise _wrong_shape("3.1 messages are JSON objects")
    kind = envelope.get("type")
    data = envelope.get("data")
    if kind == STATS_ENTRY:
        if type(data) is not str:
            raise _wrong_shape("stats-entry data must be a JSON string")
        if "\n" in data or "\r" in data:
            try:
                data = orjson.dumps(orjson.loads(data)).decode()
            except orjson.JSONDecodeError:
                raise ProtocolViolation("invalid_json", "stats-entry data is not JSON") from None
        return data
    if kind == IDENTITY:
        if type(data) is list and len(data) >= 3:
            return orjson.dumps(data).decode()
        if type(data) is dict:
            when = round(clock()) if clock is not None else data.get("timestamp")
            return orjson.dumps([IDENTITY, None, data, when]).decode()
        raise _wrong_shape("identity data must be an array or an object")
    return None


def entry_seq(entry: object) -> int | None:
    """The sequence number of a 3.1 line ``[method, pcId, value, ts, seq]``."""
    if type(entry) is list and len(entry) >= 5 and type(entry[4]) is int:
        return int(entry[4])
    return None


def wrap(text: str, entry: object) -> tuple[str, Any]:
    """A stored 3.1 line back into what its client sent: ``(type, data)``. Identity
    arrays travel as JSON in ``data``, every other line as the string it was."""
    if type(entry) is list and entry and entry[0] == IDENTITY:
        return IDENTITY, entry
    return STATS_ENTRY, text
