"""How each dialect of getStats names things: the vocabulary the interpreter reads.

Browsers and years spell the same report differently:

- **standard** (Chrome since ~M70, Firefox since ~57, Safari): ``inbound-rtp``,
  ``outbound-rtp``, ``remote-inbound-rtp``, ``remote-outbound-rtp``, ``transport``,
  ``candidate-pair``; numbers are JSON numbers, times in seconds (``roundTripTime``,
  ``jitter``).
- **pre-standard** (Firefox before 57, Chrome 48's shim): the same without hyphens
  (``inboundrtp``, ``candidatepair``, ...); a report with ``isRemote: true`` is the far
  end's view (an ``inboundrtp`` with ``isRemote`` is a ``remote-inbound-rtp``).
- **legacy Chrome** (``goog*``): one ``ssrc`` report per RTP stream and direction
  (id ending ``_send``/``_recv``), numbers as strings, times in milliseconds
  (``googRtt``, ``googJitterReceived``), audio levels 0..32767; ``googCandidatePair``
  with ``googActiveConnection``, ``googComponent`` with ``selectedCandidatePairId``.

Everything here is pure and cheap: it runs for every report of every getStats.
"""

from __future__ import annotations

import math
from typing import Any, Final

Report = dict[str, Any]
#: A getStats result as the interpreter and its consumers take it, ``{stats id:
#: report}``. Its values are checked where they are read (``type(r) is dict``): an
#: imported document can hold anything there. They are typed ``Any`` rather than
#: ``Report`` because the compiled build (mypyc) checks a declared type wherever a value
#: leaves a container, so a bad report would raise there instead of being skipped.
Result = dict[str, Any]

#: Media kinds the interpreter follows; RTP reports of other kinds are client noise.
KINDS: Final = frozenset({"audio", "video"})

#: Spellings of the standard types in older dialects (``isRemote`` handled apart).
TYPE_ALIASES: Final[dict[str, str]] = {
    "candidatepair": "candidate-pair",
    "googCandidatePair": "candidate-pair",
    "localcandidate": "local-candidate",
    "remotecandidate": "remote-candidate",
    "googComponent": "transport",
}
#: Pre-standard RTP types → the direction of the local stream a report describes
#: (with ``isRemote`` it is the far end's report about the opposite direction).
PRE_STANDARD_RTP: Final[dict[str, str]] = {"inboundrtp": "recv", "outboundrtp": "send"}
#: Candidate types as older browsers named them → the standard names.
_CANDIDATE_TYPES: Final[dict[str, str]] = {
    "host": "host",
    "srflx": "srflx",
    "prflx": "prflx",
    "relay": "relay",
    "local": "host",
    "stun": "srflx",
    "serverreflexive": "srflx",
    "peerreflexive": "prflx",
    "relayed": "relay",
}
#: Fields that change with each new round-trip measurement, most specific first.
_MEASUREMENT_FIELDS: Final = (
    "roundTripTimeMeasurements",
    "totalRoundTripTime",
    "responsesReceived",
    "timestamp",
)
#: Legacy audio levels are 0..32767; standard ones 0..1.
LEGACY_LEVEL_SCALE: Final = 32767.0


def number(value: object) -> float | None:
    """A finite JSON number, or a legacy (goog) number string, as a float; anything
    else (booleans included) None."""
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None  # type: ignore[arg-type,return-value]
    if kind is int:
        return float(value)  # type: ignore[arg-type]
    if kind is str and value:
        try:
            parsed = float(value)  # type: ignore[arg-type]
        except ValueError:
            return None
        return parsed if math.isfinite(parsed) else None
    return None


def media_kind(report: Report, reports: Result | None = None) -> str | None:
    """``audio`` or ``video`` from ``kind``, the older ``mediaType``, or the mime type of
    the report's codec; None for anything else."""
    kind = report.get("kind") or report.get("mediaType")
    if kind in KINDS:
        return kind  # type: ignore[no-any-return]
    codec_id = report.get("codecId")
    if reports is not None and type(codec_id) is str:
        codec = reports.get(codec_id)
        mime = codec.get("mimeType") if type(codec) is dict else None
        if type(mime) is str:
            prefix = mime.split("/", 1)[0].lower()
            if prefix in KINDS:
                return prefix
    return None


def candidate_type(value: object) -> str | None:
    """``host``/``srflx``/``prflx``/``relay`` from any dialect's name for it; an unknown
    name is kept as it is (cut by whoever stores it)."""
    if type(value) is not str:
        return None
    return _CANDIDATE_TYPES.get(value, value)


def measurement(report: Report) -> object:
    """What tells one round-trip measurement from the next in a report that repeats
    the last value until a new one arrives: the measurement counter, else the total
    of all round trips, else the STUN responses, else the report's own timestamp
    (Firefox: a new RTCP report has a new timestamp). None: every report is new."""
    for name in _MEASUREMENT_FIELDS:
        value = report.get(name)
        if value is not None:
            return value
    return None


def is_active_pair(report: Report) -> bool:
    """A candidate pair that says itself that it carries the media: Firefox's
    ``selected``, legacy Chrome's ``googActiveConnection``."""
    if report.get("selected") is True:
        return True
    active = report.get("googActiveConnection")
    return active is True or active == "true"
