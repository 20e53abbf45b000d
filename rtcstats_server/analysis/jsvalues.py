"""The JavaScript semantics the peer's feature definitions rely on, in Python.

The reference extractor (``packages/rtcstats-features``) is JavaScript: its values
come out of ``Math.round``, ``>>``, truthiness and ``hasOwnProperty`` tests. Where a
definition we share with it depends on one of those, the rule is written here once,
so "the same definition" means the same number, not a near one (``Math.round(2.5)``
is 3 where Python's ``round`` gives 2).
"""

from __future__ import annotations

import math
from typing import Any, Final, TypeGuard

_TWO_32: Final = 1 << 32
_TWO_31: Final = 1 << 31

#: Events whose state Chrome's webrtc-internals JSON-encodes (``"\"stable\""``) where
#: rtcstats-js writes it bare; the peer's reader takes both.
STATE_EVENTS: Final = frozenset(
    {
        "onsignalingstatechange",
        "oniceconnectionstatechange",
        "onconnectionstatechange",
        "onicegatheringstatechange",
    }
)


def js_round(value: float) -> int:
    """``Math.round``: halves go up (towards +infinity)."""
    return math.floor(value + 0.5)


def to_int32(value: object) -> int:
    """ECMAScript ToInt32 of a JSON value: what ``x >> n`` shifts (0 for anything
    that is not a finite number, ``undefined`` included)."""
    if type(value) is bool:
        return int(value)
    if type(value) is int:
        number = value
    elif type(value) is float and math.isfinite(value):
        number = math.trunc(value)
    else:
        return 0
    number %= _TWO_32
    return number - _TWO_32 if number >= _TWO_31 else number


def shifted(value: object, bits: int) -> int:
    """``value >> bits`` as JavaScript computes it (sign-propagating, on 32 bits)."""
    return to_int32(value) >> bits


def truthy(value: object) -> bool:
    """JavaScript truthiness of a JSON value: null, false, 0, NaN and "" are false;
    every object and array, even empty, is true."""
    if value is None or value is False:
        return False
    if type(value) is int or type(value) is float:
        return value == value and value != 0
    if type(value) is str:
        return value != ""
    return True


def is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number (booleans are not)."""
    return type(value) is int or type(value) is float


def pluck(report: dict[str, Any] | None, *names: str) -> Any:
    """The value of the first of ``names`` the report has (``hasOwnProperty``: a
    present ``null`` counts); None when it has none of them."""
    if report is None:
        return None
    for name in names:
        if name in report:
            return report[name]
    return None


def divide(report: dict[str, Any] | None, numerator: str, denominator: str) -> float | None:
    """``numerator / denominator`` of one report when both are numbers and the
    divisor is not 0; None otherwise (the peer's ``divideStat``)."""
    if report is None:
        return None
    top, bottom = report.get(numerator), report.get(denominator)
    if not is_number(top) or not is_number(bottom) or bottom == 0:
        return None
    return float(top) / float(bottom)


def state_value(value: object) -> object:
    """A connection, ICE or signaling state as a bare string, whether the client wrote
    it bare or JSON-encoded (``"\"stable\""``)."""
    if type(value) is str and len(value) > 1 and value[0] == '"' and value[-1] == '"':
        return value[1:-1]
    return value
