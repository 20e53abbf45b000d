"""3.1 envelopes ``{statsSessionId, type, data}``: the dump line each one carries.

Jitsi clients and backend pushers wrap every event in an envelope. What is stored is
the line inside: a ``stats-entry``'s ``data`` is a JSON string kept as it was sent;
an ``identity``'s ``data`` is the array ``["identity", null, {...}, ts, seq]`` (from
browsers) or the bare object (from pushers, stored in that array form). The other
types carry nothing to store. The websocket decoder (dialects/jitsi.py), the reader
of envelope files, uploads and replay all open envelopes here, so they agree on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

import orjson
import simdjson

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


#: Where a 3.1 line ``[method, pcId, value, ts, seq]`` keeps its sequence number.
SEQ_INDEX: Final = 4


def entry_seq(entry: object) -> int | None:
    """The sequence number of a parsed 3.1 line ``[method, pcId, value, ts, seq]``."""
    if type(entry) is list and len(entry) > SEQ_INDEX and type(entry[SEQ_INDEX]) is int:
        return int(entry[SEQ_INDEX])
    return None


_parsers = threading.local()


def stats_entry_seq(text: str) -> int | None:
    """The seq of a stats-entry's ``data`` string, which must be JSON (the dump's lines
    are read back with orjson): ``ProtocolViolation`` (``invalid_json``) otherwise.

    Why not ``entry_seq(orjson.loads(text))``: on the 3.1 ingest path that parse built
    every report of every message only to read one number, 14 % of the event loop's
    time. simdjson validates the whole text without building objects and is read
    for the one element (a fifth of the cost). orjson stays the authority: simdjson
    refuses integers beyond 64 bits that orjson reads as floats, so whatever simdjson
    refuses is parsed by orjson again, and a text that is not an array goes to orjson
    first. Both refuse nesting deeper than 1024 (test_stats_entry_seq.py holds them to
    it). One parser per thread (a parser is not shareable); it keeps the
    capacity of the largest text it parsed: at most ``ingest.max_message_bytes`` times
    a small factor per thread.
    """
    if not text.startswith("["):
        # not a line (and simdjson would skip a byte-order mark that orjson refuses)
        return _orjson_entry_seq(text)
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = simdjson.Parser()
    try:
        doc = parser.parse(text)
    except (ValueError, RuntimeError):
        return _orjson_entry_seq(text)
    if type(doc) is not simdjson.Array or len(doc) <= SEQ_INDEX:
        return None
    value: object = doc[SEQ_INDEX]
    del doc  # the parser refuses a new text while a view of the last one lives
    return value if type(value) is int else None


def _orjson_entry_seq(text: str) -> int | None:
    try:
        return entry_seq(orjson.loads(text))
    except orjson.JSONDecodeError:
        raise ProtocolViolation("invalid_json", "stats-entry data is not JSON") from None


def wrap(text: str, entry: object) -> tuple[str, Any]:
    """A stored 3.1 line back into what its client sent: ``(type, data)``. Identity
    arrays travel as JSON in ``data``, every other line as the string it was."""
    if type(entry) is list and entry and entry[0] == IDENTITY:
        return IDENTITY, entry
    return STATS_ENTRY, text
