"""A session record's fields, put together in one place.

Two kinds of writes come from the session layer. While a session streams, each
write carries its opening fields (``opening_fields``), so that any one of them can
create the record. When it is stored, the finish writes the final record once,
whole (``final_record``): the facts its source knows, how it ended, where its dump
is, and what the finish hooks contribute (a viewer link, a forwarding state). Every
final record has the same fields whatever its source (a stream, a crash, an upload):
what a source cannot know is None, never missing.

What happens later (the analysis, a forward, the bucket upload) is not assembled
here: those steps set their own fields through ``metadata.steps.record_step``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from rtcstats_server.dialects.base import IDENTITY_FIELDS, Handshake
from rtcstats_server.exceptions import IllegalTransition
from rtcstats_server.metadata.record import UPLOAD_FIELDS, SessionState, utcnow
from rtcstats_server.sessions.state import Session, State

#: Who the client is and where it came from: written while the session streams.
OPENING_FIELDS = (
    "client_session_id",
    "dialect",
    "url",
    "origin",
    "user_agent",
    "remote_address",
    "node_id",
    *IDENTITY_FIELDS,
)

#: Facts a session's source knows (or, when it cannot, leaves None) for its final record.
FACT_FIELDS = (
    *OPENING_FIELDS,
    "messages",
    "bytes_received",
    "dropped_messages",
    "connections",
    "last_seq",
    "dump_raw_bytes",
    *UPLOAD_FIELDS,
)

#: Facts a source may add when it has them (a verified token says ``authenticated``).
OPTIONAL_FACTS = frozenset({"authenticated"})

#: What the finish itself writes: how the session ended and where its dump is.
ENDING_FIELDS = (
    "state",
    "started_at",
    "ended_at",
    "updated_at",
    "duration_s",
    "close_code",
    "end_reason",
    "dump_key",
    "dump_bytes",
)


def opening_fields(
    *,
    client_session_id: str | None,
    dialect: str,
    handshake: Handshake,
    node_id: str,
    started_at: datetime,
    known: Mapping[str, Any],
) -> dict[str, Any]:
    """What every write of a live session carries. ``known``: ids the client's token
    or identity message gave."""
    return {
        "client_session_id": client_session_id,
        "dialect": dialect,
        "url": handshake.path,
        "origin": handshake.origin or None,
        "user_agent": handshake.user_agent or None,
        "remote_address": handshake.remote or None,
        "node_id": node_id,
        "started_at": started_at,
        "updated_at": utcnow(),
        **known,
    }


def facts_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The facts a stored record holds (crash recovery finishes from what was written)."""
    allowed = (*FACT_FIELDS, *OPTIONAL_FACTS)
    return {name: record[name] for name in allowed if record.get(name) is not None}


def final_record(session: Session, contributions: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The record that ends ``session`` (put, not yet stored), written in one go.

    ``contributions``: the fields each finish hook adds; a hook may not set a field
    of the session's own (a ValueError names the clash).
    """
    ending = session.ending
    if session.state is not State.PUT or ending is None:
        raise IllegalTransition(session.id, session.state.value, "a final record")
    stray = ending.facts.keys() - {*FACT_FIELDS, *OPTIONAL_FACTS}
    if stray:
        raise ValueError(f"not facts of a session: {sorted(stray)}")
    ended = ending.ended_at
    record: dict[str, Any] = {
        "id": session.id,
        **dict.fromkeys(FACT_FIELDS),
        **ending.facts,
        "state": SessionState.STORED.value,
        "started_at": session.started_at,
        "ended_at": ended,
        "updated_at": utcnow(),
        "duration_s": round(max((ended - session.started_at).total_seconds(), 0.0), 3),
        "close_code": ending.code,
        "end_reason": ending.reason.value,
        "dump_key": None,
        "dump_bytes": None,
        **(session.stored.record_fields() if session.stored is not None else {}),
    }
    for contribution in contributions:
        clash = contribution.keys() & record.keys()
        if clash:
            raise ValueError(f"a finish hook may not set {sorted(clash)}")
        record.update(contribution)
    return record
