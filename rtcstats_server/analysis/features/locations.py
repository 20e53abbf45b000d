"""Location features: where the client, its selected candidates and its relays are.

A candidate event's location is the one ingest wrote into it before masking
(geo_annotation.py), else, when the analysis has a locator and the dump kept the
address, a lookup of that address. The peer's definitions then apply as they are:

- ``rtcstats_location_*``: the local candidate of the first getStats result's selected
  pair, matched to a candidate gathered before that result;
- ``rtcstats_peer_location_*``: its remote candidate, matched to an ``addIceCandidate``
  before that result;
- ``rtcstats_relay_location_*``: the last gathered candidate with a location before
  that result (of any type, despite the name);
- ``turn_location_*`` (ours): the first gathered relay candidate with a location.

The peer matches by address. Masked addresses (``x.x.x.x``) all look alike, so a match
first wants the same address and port (a candidate's port survives masking) and falls
back to the address alone only when it is a real one.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Final

from rtcstats_server.analysis.candidates import Candidate, parse_candidate
from rtcstats_server.analysis.geo import GeoLocator, Location
from rtcstats_server.analysis.geo_annotation import (
    METADATA_KEY,
    event_location,
    maxmind_location,
    read_annotation,
)
from rtcstats_server.analysis.reports import Report, Result
from rtcstats_server.analysis.tracks import linked_report
from rtcstats_server.dumps.events import Event

#: Candidate events remembered per connection before its first getStats.
MAX_CANDIDATES: Final = 256
_PARTS: Final = ("continent", "country", "city")


def location_features(prefix: str, location: Location, asn: bool = True) -> dict[str, Any]:
    """``<prefix>_continent``, ``_country``, ``_city`` (and ``_asn``,
    ``_organization``) of a location, the known ones only."""
    values: dict[str, str | int | None] = {
        "continent": location.continent,
        "country": location.country,
        "city": location.city,
    }
    if asn:
        values.update(asn=location.asn, organization=location.organization)
    return {f"{prefix}_{key}": value for key, value in values.items() if value is not None}


def client_location(metadata: dict[str, Any], locator: GeoLocator | None) -> Location | None:
    """The client's location: written by ingest (``location``), by the peer's server
    (``locations``, MaxMind records), or looked up now when the dump kept the address."""
    found = read_annotation(metadata.get(METADATA_KEY))
    if found is not None:
        return found
    peers = metadata.get("locations")
    if type(peers) is list and peers:
        found = maxmind_location(peers[0])
        if found is not None:
            return found
    addresses = metadata.get("remoteAddresses")
    if locator is not None and type(addresses) is list and addresses:
        return locator.lookup(addresses[0])
    return None


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.removeprefix("[").removesuffix("]").partition("%")[0])
    except ValueError:
        return False
    return True


def _match(seen: list[tuple[Candidate, Location]], report: Report | None) -> Location | None:
    """The location of the first remembered candidate that is this stats report's."""
    if report is None:
        return None
    address = report.get("address") or report.get("ip")
    if type(address) is not str or not address:
        return None
    port = report.get("port")
    for candidate, location in seen:
        if candidate.address == address and candidate.port == port:
            return location
    if _is_address(address):
        for candidate, location in seen:
            if candidate.address == address:
                return location
    return None


class ConnectionLocations:
    """The location features of one connection, fed its candidate events and its
    first getStats result."""

    __slots__ = ("features", "local", "locator", "pending", "relay", "remote", "turn")

    def __init__(self, locator: GeoLocator | None) -> None:
        self.locator = locator
        self.pending = True  # before the first getStats result
        self.local: list[tuple[Candidate, Location]] = []
        self.remote: list[tuple[Candidate, Location]] = []
        self.relay: Location | None = None
        self.turn: Location | None = None
        self.features: dict[str, Any] = {}

    def candidate(self, event: Event, gathered: bool) -> None:
        """An ``onicecandidate`` (``gathered``) or ``addIceCandidate`` event."""
        if not self.pending and (not gathered or self.turn is not None):
            return
        value = event.value
        candidate = parse_candidate(value.get("candidate") if type(value) is dict else None)
        if candidate is None:
            return
        location = event_location(event.extra)
        if location is None and self.locator is not None:
            location = self.locator.lookup(candidate.address)
        if location is None:
            return
        if gathered and candidate.type == "relay" and self.turn is None:
            self.turn = location
        if not self.pending:
            return
        if gathered:
            self.relay = location
        seen = self.local if gathered else self.remote
        if len(seen) < MAX_CANDIDATES:
            seen.append((candidate, location))

    def first_stats(self, reports: Result, pair: Report | None) -> None:
        """The first getStats result, and its selected pair (the peer's rule)."""
        if not self.pending:
            return
        self.pending = False
        if pair is not None:
            for prefix, key, seen in (
                ("rtcstats_location", "localCandidateId", self.local),
                ("rtcstats_peer_location", "remoteCandidateId", self.remote),
            ):
                found = _match(seen, linked_report(reports, pair, key))
                if found is not None:
                    self.features.update(location_features(prefix, found))
        self.local.clear()
        self.remote.clear()

    def result(self) -> dict[str, Any]:
        out = dict(self.features)
        if self.relay is not None:
            out.update(location_features("rtcstats_relay_location", self.relay, asn=False))
        if self.turn is not None:
            out.update(location_features("turn_location", self.turn))
        return out
