"""Numbers and times a stranger writes into a query string, read without surprises.

``str.isdigit()`` says yes to ``²`` and to Arabic-Indic digits; ``int()`` refuses the
first, takes the second, and also takes ``1_000`` and spaces; ``datetime.fromisoformat``
takes year 1 and offsets that no UTC datetime can hold. Each of those once escaped a
handler as a 500 with a traceback. Here a number is ASCII digits of a bounded length,
and a time is an aware UTC datetime between :data:`EARLIEST` and :data:`LATEST`, a
range every session store and the API's ISO form can hold; anything else is ``None``
or a :class:`ProtocolViolation` (400) naming the parameter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from rtcstats_server.exceptions import ProtocolViolation

#: The instants a query, a cursor or a viewer window may name.
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9999, 1, 1, tzinfo=UTC)
_LATEST_MS: Final = (LATEST - EARLIEST) // timedelta(milliseconds=1)
#: Epoch milliseconds of LATEST have 15 digits.
MAX_EPOCH_MS_DIGITS: Final = len(str(_LATEST_MS))


def ascii_int(text: str | None, max_digits: int) -> int | None:
    """``text`` as a non-negative integer when it is 1 to ``max_digits`` ASCII digits."""
    if not text or len(text) > max_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def utc_in_range(value: datetime) -> datetime | None:
    """``value`` as aware UTC (naive means UTC) when it lies in EARLIEST..LATEST."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError):
        return None  # e.g. year 1 at +01:00: before datetime.min in UTC
    return utc if EARLIEST <= utc <= LATEST else None


def parse_time(name: str, text: str) -> datetime:
    """A query's ISO 8601 time or epoch milliseconds, or a 400 naming ``name``."""
    millis = ascii_int(text, MAX_EPOCH_MS_DIGITS)
    parsed: datetime | None = None
    if millis is not None:
        parsed = EARLIEST + timedelta(milliseconds=millis) if millis <= _LATEST_MS else None
    elif text.isascii():
        try:
            parsed = utc_in_range(datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            parsed = None
    if parsed is None:
        raise ProtocolViolation(
            "bad_filter", f"{name} must be ISO 8601 or epoch ms, from 1970 to 9999"
        )
    return parsed


def parse_limit(text: str | None, maximum: int, reason: str, default: int = 100) -> int:
    """A page size from 1 to ``maximum``, or a 400 with ``reason`` (each API its own)."""
    if text is None:
        return default
    limit = ascii_int(text, len(str(maximum)))
    if limit is None or not 1 <= limit <= maximum:
        raise ProtocolViolation(reason, f"limit must be an integer from 1 to {maximum}")
    return limit
