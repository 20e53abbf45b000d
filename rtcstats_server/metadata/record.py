"""The session record: the public schema backends read, and the query over it.

A record is a plain dict-shaped document so that the same fields land unchanged in
SQLite JSON, a MongoDB document and the API's JSON. Times are timezone-aware UTC
datetimes (BSON dates in MongoDB, ISO 8601 in the API).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from rtcstats_server.exceptions import ProtocolViolation
from rtcstats_server.query_values import utc_in_range


class SessionState(StrEnum):
    """Where a session is in its life; records only move to a higher rank.

    ``streaming`` and ``detached`` share a rank: a resumed client moves a session
    back from detached to streaming, and both are simply "live".
    """

    STREAMING = "streaming"
    DETACHED = "detached"
    FINISHING = "finishing"
    STORED = "stored"

    @property
    def rank(self) -> int:
        return _STATE_RANKS[self]


_STATE_RANKS = {
    SessionState.STREAMING: 0,
    SessionState.DETACHED: 0,
    SessionState.FINISHING: 1,
    SessionState.STORED: 2,
}


class EndReason(StrEnum):
    CLIENT_CLOSED = "client_closed"
    CONFERENCE_LEFT = "conference_left"
    IDLE_TIMEOUT = "idle_timeout"
    RESUME_EXPIRED = "resume_expired"
    SHUTDOWN = "shutdown"
    RECOVERED = "recovered"
    MESSAGE_TOO_BIG = "message_too_big"
    BINARY_FRAME = "binary_frame"
    BAD_MESSAGES = "bad_messages"
    PROTOCOL_ERROR = "protocol_error"
    SESSION_TOO_LARGE = "session_too_large"
    DUMP_ERROR = "dump_error"
    #: Not streamed: the dump came whole through POST /v1.0/upload.
    UPLOADED = "uploaded"


#: Fields a query may filter on with equality; each has an index in every store.
EQUALITY_FILTERS = ("conference_id", "user_id", "client_session_id", "app", "state")

#: Fields a query may filter on with equality that stores read from the document
#: (the rtcstats.com-compatible API's ``sessionId``, ``browser``, ``os``).
DOCUMENT_FILTERS = ("meeting_id", "browser", "os", "dialect")

#: Where the dump waits and whether it reached the bucket (object storage).
DUMP_STORE_FIELDS = (
    "dump_sha256",
    "dump_location",
    "dump_upload_state",
    "dump_upload_attempts",
    "dump_upload_error",
    "dump_uploaded_at",
)
#: Forwarding to rtcstats.com (forwarders/worker.py).
FORWARD_FIELDS = (
    "forward_state",
    "forward_attempts",
    "forward_error",
    "forward_error_code",
    "forward_http_status",
    "forwarded_at",
    "rtcstats_id",
    "rtcstats_url",
    "embed_url",
    "embed_url_absent",
)
#: Sessions uploaded to /v1.0/upload (uploads/).
UPLOAD_FIELDS = (
    "source",
    "client_protocol",
    "upload_layout",
    "upload_file_name",
    "upload_bytes",
    "uploaded_at",
)
#: The quality summary (analysis/summary.py); flat copies for queries and indexes.
ANALYSIS_FIELDS = (
    "findings",
    "max_loss_pct",
    "max_rtt_ms",
    "pc_count",
    "browser",
    "os",
    "summary_error",
    "quality",
    # the session's features (analysis/features, docs/features.md), from the same pass
    "features",
)

#: Every field of a record, in the order the API shows them.
RECORD_FIELDS = (
    "id",
    "client_session_id",
    "dialect",
    "conference_id",
    "user_id",
    "meeting_id",
    "app",
    "endpoint_id",
    "parent_session_id",
    "display_name",
    "url",
    "origin",
    "user_agent",
    "remote_address",
    "node_id",
    "state",
    "started_at",
    "ended_at",
    "duration_s",
    "updated_at",
    "messages",
    "bytes_received",
    "dropped_messages",
    "connections",
    "last_seq",
    "close_code",
    "end_reason",
    "dump_key",
    "dump_bytes",
    "dump_raw_bytes",
    *DUMP_STORE_FIELDS,
    *FORWARD_FIELDS,
    *UPLOAD_FIELDS,
    *ANALYSIS_FIELDS,
)


class Step(StrEnum):
    """A step that runs after a session's record is written, on its own time (an
    upload to the bucket, a forward upstream, the analysis), and records its outcome."""

    DUMP_UPLOAD = "dump_upload"
    FORWARDING = "forwarding"
    ANALYSIS = "analysis"


#: The record fields each later step sets, and the only ones it may set: a step never
#: touches a session's state, ids, times or another step's fields. ``updated_at`` moves
#: with every step's write.
STEP_FIELDS: dict[Step, frozenset[str]] = {
    Step.DUMP_UPLOAD: frozenset({"dump_key", "dump_bytes", *DUMP_STORE_FIELDS}),
    Step.FORWARDING: frozenset({*FORWARD_FIELDS, "forward_next_attempt_at"}),
    Step.ANALYSIS: frozenset(ANALYSIS_FIELDS),
}


#: What ``SessionStore.update`` never sets: identity, state and the start time belong
#: to the session layer's own writes (and are the columns and ranks stores index).
_NOT_UPDATABLE = frozenset(
    {"id", "_id", "state", "state_rank", "started_at", "node_id", "conference_id", "user_id"}
    | {"client_session_id", "app"}
)
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def check_update(fields: dict[str, Any]) -> None:
    """ValueError for a field ``update`` may not set (or a name no record field has)."""
    for name in fields:
        if name in _NOT_UPDATABLE or not _FIELD_NAME.match(name):
            raise ValueError(f"an update cannot set {name!r}")


#: Fields that hold datetimes (stores that keep JSON turn them back on read).
DATETIME_FIELDS = frozenset(
    {
        "started_at",
        "ended_at",
        "updated_at",
        "dump_uploaded_at",
        "forwarded_at",
        "forward_next_attempt_at",
        "uploaded_at",
    }
)


def utcnow() -> datetime:
    return datetime.now(UTC)


#: What a MongoDB document (BSON) may hold: larger integers raise OverflowError there.
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
#: No record may grow past this (MongoDB refuses documents over 16 MiB; we stay far
#: below so records stay cheap to read, list and replicate).
MAX_RECORD_BYTES = 1 << 20
#: Longest string kept in a stored record; longer ones are cut.
MAX_STRING_CHARS = 4096
#: Deeper nesting than this is not kept (our own summaries are 5 levels deep).
_MAX_DEPTH = 16


def fits_int64(value: int) -> bool:
    return INT64_MIN <= value <= INT64_MAX


def bounded(value: Any, depth: int = 0) -> Any:
    """``value`` as every store can hold it: integers outside int64 and non-finite
    floats become None, strings are cut at ``MAX_STRING_CHARS``, keys are strings that
    MongoDB accepts (no leading ``$``, no ``.``), nesting stops at ``_MAX_DEPTH``.

    The last guard before a store: values from clients are bounded where they are
    read, and this makes sure that a bug there still cannot make a record unwritable.
    """
    if value is None or isinstance(value, bool | datetime):
        return value
    if isinstance(value, int):
        return value if fits_int64(value) else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value if len(value) <= MAX_STRING_CHARS else value[:MAX_STRING_CHARS]
    if depth >= _MAX_DEPTH:
        return None
    if isinstance(value, dict):
        return {_key(k): bounded(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [bounded(v, depth + 1) for v in value]
    return str(value)[:MAX_STRING_CHARS]


def _key(name: object) -> str:
    text = str(name)[:256].replace(".", "_")
    return "_" + text[1:] if text.startswith("$") else text


#: The large fields the analysis of a dump contributes.
_LARGE_FIELDS = frozenset({"quality", "features"})


def essential_fields(fields: dict[str, Any], why: str) -> dict[str, Any]:
    """The record without its quality summary and features, every value bounded: what
    is written when a store refuses the whole record, so the session still ends
    ``stored`` and points at its dump. ``why`` goes to ``summary_error``."""
    small = {name: bounded(value) for name, value in fields.items() if name not in _LARGE_FIELDS}
    if "quality" in fields:
        small["summary_error"] = f"quality summary not stored: {why}"[:500]
    return small


@dataclass(frozen=True)
class SessionQuery:
    """Filters of ``GET /v1/sessions``: equality on ids, a time range on started_at."""

    equals: dict[str, str] = field(default_factory=dict)
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    cursor: tuple[datetime, str] | None = None
    #: Upload state of the rtcstats.com forwarder (pending/uploading/uploaded/failed).
    forward_state: str | None = None
    #: True: only records with an embed URL; False: only records without one.
    has_embed_url: bool | None = None
    #: Only records whose quality summary has this finding (``findings`` holds it).
    finding: str | None = None
    #: Only records whose ``max_loss_pct`` is at least this (records without: excluded).
    min_loss_pct: float | None = None
    #: Equality on fields of ``DOCUMENT_FILTERS`` (no column of their own in SQLite).
    fields: dict[str, str] = field(default_factory=dict)
    #: Only records whose quality summary has at least one of these findings.
    findings_any: tuple[str, ...] = ()


def encode_cursor(started_at: datetime, session_id: str) -> str:
    """An opaque position after which the next page starts (newest first)."""
    raw = orjson.dumps([started_at.isoformat(), session_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The position ``cursor`` names; a 400 for anything :func:`encode_cursor` never made
    (a stranger can write any JSON inside, e.g. a time in year 1)."""
    started_at: datetime | None = None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, session_id = orjson.loads(raw)
        if isinstance(when, str) and isinstance(session_id, str):
            started_at = utc_in_range(datetime.fromisoformat(when))
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        started_at = None
    if started_at is None:
        raise ProtocolViolation("bad_cursor", "cursor is not one this API returned")
    return started_at, str(session_id)


def to_json_ready(record: dict[str, Any]) -> dict[str, Any]:
    """The API form of a record: ISO times, every known field present."""
    out: dict[str, Any] = {}
    for name in RECORD_FIELDS:
        value = record.get(name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    for name, value in record.items():
        if name not in out and not name.startswith("_"):
            out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out
