"""Sans-I/O pieces shared by the dialect decoders: the handshake and the results.

A decoder never touches a socket. The websocket handler gives it the handshake,
then each text message, and acts on the small results it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from rtcstats_server.exceptions import ProtocolViolation

#: Longest value kept from a client-supplied identity field (the rest is in the dump).
IDENTITY_VALUE_MAX = 256

#: Identity keys as clients send them → record fields (first match wins).
IDENTITY_FIELDS: dict[str, tuple[str, ...]] = {
    "conference_id": ("confName", "conferenceId", "conference"),
    "user_id": ("userId", "displayName", "user"),
    "display_name": ("displayName",),
    "meeting_id": ("meetingUniqueId", "sessionId"),
    "app": ("applicationName", "app"),
    "endpoint_id": ("endpointId",),
    "parent_session_id": ("parentStatsSessionId",),
}


@dataclass(frozen=True)
class Handshake:
    """What the upgrade request tells us about a client, captured once."""

    path: str
    query: Mapping[str, str]
    subprotocol: str
    user_agent: str
    origin: str
    remote: str
    #: Where the client's address is (continent, country, city, asn, organization),
    #: looked up before the address was masked; None without geo databases.
    location: dict[str, Any] | None = None


@dataclass(frozen=True)
class ClientToken:
    """A verified client token: the record fields it pins, and who holds it.

    ``holder`` is compared when a client resumes a session: equal holders are the same
    client (a refreshed token keeps its claims; only ``exp`` moves).
    """

    fields: dict[str, Any]
    holder: tuple[tuple[str, str], ...]


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 3x, and this is made per message
class DumpLine:
    """One event to append to the dump as-is; ``seq`` orders 3.1 entries."""

    text: str
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """Session ids the client announced, already mapped to record fields."""

    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Reply:
    """A text message to send back to the client."""

    text: str


@dataclass(frozen=True, slots=True)
class EndOfSession:
    """The client said the session is over; no resume will follow."""


Result = DumpLine | Identity | Reply | EndOfSession


def parse_json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolViolation("invalid_json", "message is not valid JSON") from None
    except RecursionError:  # pragma: no cover - orjson limits depth itself
        raise ProtocolViolation("invalid_json", "message nests too deep") from None


def identity_fields(value: object) -> dict[str, str]:
    """Record fields from an identity object; non-strings and overlong values are cut."""
    if not isinstance(value, dict):
        return {}
    fields: dict[str, str] = {}
    for field, keys in IDENTITY_FIELDS.items():
        for key in keys:
            raw = value.get(key)
            if isinstance(raw, str | int) and not isinstance(raw, bool) and str(raw):
                fields[field] = str(raw)[:IDENTITY_VALUE_MAX]
                break
    return fields


def as_line(text: str, parsed: object) -> str:
    """The message itself when it is one line, else its compact re-encoding."""
    if "\n" in text or "\r" in text:
        return orjson.dumps(parsed).decode()
    return text
