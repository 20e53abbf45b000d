"""Locations written into dump lines at ingest, before IP masking, and read back.

Dumps are stored with every address masked by default (``privacy.obfuscate_ip_addresses``),
so the analysis, later and elsewhere, cannot look an address up any more. Where
masking is on and a locator is configured, ingest looks up the address of each ICE
candidate event (``onicecandidate``, ``addIceCandidate``) just before the line is
masked and writes the answer into the line, the way the peer's server does it: an
object ``{"rtcstatsLocation": {continent, country, city, asn, organization}}`` as the
first element after the value (rtcstats-js: before the time delta; the dialects with
absolute times: after the time and sequence number, where the reader puts it in the
event's ``extra`` too). The peer's extractor reads the same key, so its location
features work on our dumps; ``asn`` and ``organization`` are ours. The client's own
address is looked up once per connection and written to the dump's metadata line
(``location``). Names, not addresses, are stored.

A lookup is a memory-mapped tree walk of microseconds; candidate events are a few per
connection, so this costs ingest nothing measurable.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from rtcstats_server.analysis.candidates import parse_candidate
from rtcstats_server.analysis.geo import GeoLocator, Location
from rtcstats_server.dumps.codes import METHODS

#: The key the peer's server and ours write a candidate's location under.
LOCATION_KEY: Final = "rtcstatsLocation"
#: The metadata line's key for the client's location (ours).
METADATA_KEY: Final = "location"
#: Candidate events, by name and by rtcstats-js code (as the line's first element).
_CANDIDATE_METHODS: Final = frozenset(
    {"onicecandidate", "addIceCandidate"}
    | {code for code, name in METHODS.items() if name in ("onicecandidate", "addIceCandidate")}
)
#: How a candidate event's line starts, as clients write it (no space after ``[``):
#: ingest parses only these lines (``str.startswith`` of a tuple: a C loop).
CANDIDATE_PREFIXES: Final = tuple(
    f"[{json}," for json in sorted(orjson.dumps(m).decode() for m in _CANDIDATE_METHODS)
)
#: Longest line looked at (candidate events are a few hundred bytes).
_MAX_LINE: Final = 8192


def annotation(location: Location) -> dict[str, Any]:
    """A location as it is written into a line or the metadata."""
    return {
        key: value
        for key, value in (
            ("continent", location.continent),
            ("country", location.country),
            ("city", location.city),
            ("asn", location.asn),
            ("organization", location.organization),
        )
        if value is not None
    }


def _name(value: object) -> str | None:
    return value[:200] if type(value) is str else None


def read_annotation(value: object) -> Location | None:
    """The location an annotation holds (client data: anything else gives None)."""
    if type(value) is not dict:
        return None
    asn = value.get("asn")
    location = Location(
        continent=_name(value.get("continent")),
        country=_name(value.get("country")),
        city=_name(value.get("city")),
        asn=asn if type(asn) is int else None,
        organization=_name(value.get("organization")),
    )
    return location if location.fields() else None


def event_location(extra: tuple[Any, ...]) -> Location | None:
    """The location ingest wrote into an event (its first ``extra`` element)."""
    if not extra or type(extra[0]) is not dict:
        return None
    return read_annotation(extra[0].get(LOCATION_KEY))


def maxmind_location(record: object) -> Location | None:
    """A location in MaxMind's own record form (``continent.names.en``...), as the
    peer's server writes the client's into its metadata line (``locations``)."""
    if type(record) is not dict:
        return None

    def english(key: str) -> str | None:
        part = record.get(key)
        names = part.get("names") if type(part) is dict else None
        return _name(names.get("en")) if type(names) is dict else None

    location = Location(
        continent=english("continent"), country=english("country"), city=english("city")
    )
    return location if location.fields() else None


def annotate_candidate(text: str, locator: GeoLocator, relative_time: bool) -> str | None:
    """``text`` (a dump line) with its candidate's location written in, or None when
    it is no candidate event, its address has no location, or it is annotated already.

    ``relative_time``: the rtcstats-js layout (``[method, pc, value, ..., delta]``),
    where the location goes right after the value; otherwise it is appended.
    """
    if len(text) > _MAX_LINE or not text.startswith("["):
        return None
    try:
        line = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if type(line) is not list or len(line) < 4 or line[0] not in _CANDIDATE_METHODS:
        return None
    value = line[2]
    candidate = parse_candidate(value.get("candidate") if type(value) is dict else None)
    if candidate is None:
        return None
    if any(type(item) is dict and LOCATION_KEY in item for item in line[3:]):
        return None
    location = locator.lookup(candidate.address)
    if location is None:
        return None
    written = {LOCATION_KEY: annotation(location)}
    if relative_time:
        line.insert(3, written)
    else:
        line.append(written)
    return orjson.dumps(line).decode()
