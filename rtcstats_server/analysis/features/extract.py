"""A session's features: ``{client, connections: [{id, ..., tracks: [...]}]}``.

``FeatureExtractor`` is a consumer of the stats interpreter's one pass
(``interpreter.analyse``): the pass that computes the quality summary and the
viewer's series computes the features too, from the same events and the same samples.
``extract_features`` runs it alone (the ``features`` command, tests).

Every feature is listed, with its definition, in feature_list.py (docs/features.md);
the rows follow the record's layout. Memory and size stay bounded: at most
``max_connections`` connections (``quality.max_peer_connections``, the summary's cap,
so the record's two views describe the same connections) and ``MAX_TRACK_ROWS``
tracks each; strings from the client are cut; the whole stays under
``FEATURES_MAX_BYTES`` of JSON, connections being dropped from the end past it. What
was left out is counted in ``omitted`` (absent when nothing was).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import orjson

from rtcstats_server.analysis.feature_list import Level, by_level
from rtcstats_server.analysis.features.client import ClientFeatures
from rtcstats_server.analysis.features.connection import ConnectionFeatures
from rtcstats_server.analysis.features.locations import client_location, location_features
from rtcstats_server.analysis.geo import GeoLocator
from rtcstats_server.analysis.interpreter import analyse
from rtcstats_server.analysis.samples import StatsRead
from rtcstats_server.analysis.scores import worst
from rtcstats_server.config import QualityConfig
from rtcstats_server.dumps.events import ERROR_METHOD, STATS_METHOD, Event
from rtcstats_server.dumps.reader import DumpInfo
from rtcstats_server.metadata.record import bounded

#: 1: the peer's 161 features (rtcstats-features at the commit named in
#: tests/data/peer-features/README.md) and ours.
FEATURES_VERSION: Final = 1
#: Connections with a row unless told (``quality.max_peer_connections``' default).
DEFAULT_MAX_CONNECTIONS: Final[int] = QualityConfig.model_fields["max_peer_connections"].default
#: The largest JSON the features of one session take in its record.
FEATURES_MAX_BYTES: Final = 256 << 10


class FeatureExtractor:
    """Feed it every event with what the interpreter read (``consume``), then take the
    ``result``. ``info``: what the dump says about itself (the client's location,
    written by ingest); ``locator``: looks up addresses the dump kept unmasked."""

    def __init__(
        self,
        info: DumpInfo | None = None,
        locator: GeoLocator | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.info = info
        self.locator = locator
        self._max_connections = max_connections
        self.client = ClientFeatures()
        self.connections: dict[str, ConnectionFeatures] = {}
        self.connections_omitted = 0

    @property
    def max_connections(self) -> int:
        return self._max_connections

    def consume(self, event: Event, read: StatsRead | None) -> None:
        pc_id = event.pc_id
        if pc_id is None:
            if event.method != ERROR_METHOD:
                self.client.event(event)
            return
        connection = self.connections.get(pc_id)
        if connection is None:
            if len(self.connections) >= self._max_connections:
                self.connections_omitted += event.method == "create"
                return
            connection = self.connections[pc_id] = ConnectionFeatures(
                pc_id, event.timestamp, self.locator
            )
        if event.method == STATS_METHOD:
            connection.stats(event, read)
        else:
            connection.event(event)

    def result(self) -> dict[str, Any]:
        client = self.client.result()
        metadata = self.info.metadata if self.info is not None else {}
        location = client_location(metadata, self.locator)
        if location is not None:
            client.update(location_features("location", location))
        connections = [connection.result() for connection in self.connections.values()]
        tracks = [track for connection in connections for track in connection["tracks"]]
        for name, score in (
            ("worst_estimated_mos", "estimated_mos"),
            ("worst_video_score", "video_score"),
        ):
            found = worst(track.get(score) for track in tracks)
            if found is not None:
                client[name] = found
        omitted: dict[str, int] = {}
        if self.connections_omitted:
            omitted["connections"] = self.connections_omitted
        dropped_tracks = sum(len(c.tracks_omitted) for c in self.connections.values())
        if dropped_tracks:
            omitted["tracks"] = dropped_tracks
        for connection in connections:
            for track in connection["tracks"]:
                typed(track, "track")
            typed(connection, "connection")
        features: dict[str, Any] = {
            "version": FEATURES_VERSION,
            "client": typed(client, "client"),
            "connections": connections,
        }
        if omitted:
            features["omitted"] = omitted
        return fit_features(features)


#: Per level, the features documented as integers.
_INTEGERS: Final[dict[Level, frozenset[str]]] = {
    level: frozenset(f.name for f in by_level(level) if f.type == "integer")
    for level in ("client", "connection", "track")
}


def typed(row: dict[str, Any], level: Level) -> dict[str, Any]:
    """Integer features as integers: times come out of the reader as floats (epoch
    milliseconds, their differences), ``1795483241574.0`` is written ``1795483241574``."""
    integers = _INTEGERS[level]
    for name, value in row.items():
        if type(value) is float and name in integers and value.is_integer():
            row[name] = int(value)
    return row


def fit_features(features: dict[str, Any]) -> dict[str, Any]:
    """Every value bounded for a store, and the whole under ``FEATURES_MAX_BYTES``:
    connections are dropped from the end (counted in ``omitted.connections``)."""
    features = bounded(features)
    connections = features["connections"]
    size = len(orjson.dumps(features))
    while size > FEATURES_MAX_BYTES and connections:
        keep = len(connections) // 2
        omitted = features.setdefault("omitted", {})
        omitted["connections"] = omitted.get("connections", 0) + len(connections) - keep
        del connections[keep:]
        size = len(orjson.dumps(features))
    return features


def extract_features(
    events: Iterable[Event],
    info: DumpInfo | None = None,
    locator: GeoLocator | None = None,
    config: QualityConfig | None = None,
) -> dict[str, Any]:
    """The features of a dump's events, in a pass of their own."""
    cap = config.max_peer_connections if config is not None else DEFAULT_MAX_CONNECTIONS
    extractor = FeatureExtractor(info, locator, cap)
    analyse(events, [extractor])
    return extractor.result()
