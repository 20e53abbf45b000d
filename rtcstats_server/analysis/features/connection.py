"""Connection features: one row per peer connection, the peer's definitions streamed.

The peer computes each feature by searching the connection's whole event list ("the
first X, then the next Y after it"); every such search is a small state here, moved
by each event in order, so one pass gives the same answer with a few values per
connection. getStats results are read through the stats interpreter's ``StatsRead``:
its classification of the reports (``ReportIds``) says which are transports, so the
per-result work is a few dictionary lookups, and its samples feed the tracks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from rtcstats_server.analysis.candidates import parse_candidate, sdp_candidates, sdp_lines
from rtcstats_server.analysis.features.locations import ConnectionLocations
from rtcstats_server.analysis.features.track import EventTracks, TrackFeatures
from rtcstats_server.analysis.features.values import error_text, present, text
from rtcstats_server.analysis.geo import GeoLocator
from rtcstats_server.analysis.jsvalues import (
    is_number,
    js_round,
    pluck,
    shifted,
    state_value,
    truthy,
)
from rtcstats_server.analysis.reports import Report, Result
from rtcstats_server.analysis.samples import StatsRead
from rtcstats_server.analysis.tracks import linked_report
from rtcstats_server.dumps.events import Event

#: Tracks with a row per connection; further ones are counted in ``omitted``.
MAX_TRACK_ROWS: Final = 64
#: Distinct stats ids counted for ``stats_truncated`` (an SFU's churn stays bounded).
MAX_COUNTED_IDS: Final = 4096
#: Distinct selected candidate pairs remembered for ``average_stun_round_trip_time``.
MAX_SELECTED_PAIRS: Final = 64
#: Track ids whose first unmute is remembered (``time_to_first_frame``).
MAX_UNMUTED: Final = 512
#: The peer's ``statsTruncated``: webrtc-internals keeps 1000 values per series.
_INTERNALS_SAMPLES: Final = 1000
_INTERNALS_LATE_MS: Final = 60_000
_TURN_TRANSPORTS: Final = {
    "udp": "gathering_time_turn_udp",
    "tcp": "gathering_time_turn_tcp",
    "tls": "gathering_time_turn_tls",
}


def selected_transport(reports: Result, transports: list[str]) -> Report | None:
    """The peer's selected transport: the first ``transport`` report naming a
    selected candidate pair (whether or not the pair is in the result)."""
    for transport_id in transports:
        report = reports[transport_id]
        if (
            type(report) is dict
            and report.get("type") == "transport"
            and truthy(report.get("selectedCandidatePairId"))
        ):
            return report
    return None


def _pair_of(reports: Result, transport: Report | None) -> Report | None:
    if transport is None:
        return None
    return linked_report(reports, transport, "selectedCandidatePairId")


class _Sequence:
    """ "The first ``a``, then the next ``b`` after it": the time between, once."""

    __slots__ = ("a", "b", "elapsed", "start")

    def __init__(self, a: object, b: object) -> None:
        self.a, self.b = a, b
        self.start: float | None = None
        self.elapsed: float | None = None

    def see(self, value: object, t: float) -> None:
        if t <= 0:  # a missing time: nothing is measured from or to it
            return
        if self.start is None:
            if value == self.a:
                self.start = t
        elif self.elapsed is None and value == self.b:
            self.elapsed = t - self.start


class _Description:
    """The first call of a description method and the first matching OnSuccess after
    it (same request id, the first element of ``extra``): its delay and role."""

    __slots__ = ("delay", "role", "started", "tag")

    def __init__(self) -> None:
        self.started: float | None = None
        self.tag: object = None
        self.role: object = None
        self.delay: float | None = None

    def call(self, event: Event) -> None:
        if self.started is None:
            self.started = event.timestamp
            self.tag = event.extra[0] if event.extra else None
            value = event.value
            self.role = value.get("type") if type(value) is dict else None

    def success(self, event: Event) -> None:
        if self.started is not None and self.delay is None:
            tag = event.extra[0] if event.extra else None
            if tag == self.tag:
                self.delay = event.timestamp - self.started


class ConnectionFeatures:
    """One connection's streaming state; ``result()`` is its row."""

    def __init__(self, pc_id: str, t: float, locator: GeoLocator | None) -> None:
        self.pc_id = pc_id
        self.first_t = t
        self.last_t = t
        self.last_method = ""
        self.events = 0
        self.stats_events = 0
        self.values: dict[str, Any] = {}
        self.connecting = _Sequence("connecting", "connected")
        self.checking = _Sequence("checking", "connected")
        self.connected = False
        self.ice_connected = False
        self.negotiations = 0
        self.last_signaling: object = None
        self.local_description = _Description()
        self.remote_description = _Description()
        self.offer_at: float | None = None
        self.signaling_delay: float | None = None
        self.restart = 0  # 1: restart offer created, 2: then its offer set, 3: answered
        self.gathering_start: float | None = None
        self.gathering_done = False
        self.configured = False
        # getStats
        self.seen_ids: dict[str, list[float]] = {}  # id → [results, first seen]
        self.run_keys: object = None
        self.run_length = 0
        self.need_skew = True
        self.need_dtls = True
        self.pair_pending = False  # connected, first selected pair not read yet
        self.selected: dict[str, Report] = {}
        self.first_bytes: tuple[float, Report] | None = None
        self.last_selected: tuple[float, Report] | None = None
        self.locations = ConnectionLocations(locator)
        self.event_tracks = EventTracks()
        self.tracks: dict[str, TrackFeatures] = {}
        self.tracks_omitted: set[str] = set()
        self.unmuted: dict[str, float] = {}

    # -- events -----------------------------------------------------------------------

    def event(self, event: Event) -> None:
        """Every event of the connection but getStats results."""
        self._count(event)
        method = event.method
        handler = _HANDLERS.get(method)
        if handler is not None:
            handler(self, event)

    def _count(self, event: Event) -> None:
        self.events += 1
        t = event.timestamp
        if self.first_t <= 0 < t:  # began at a missing time: starts at its first real one
            self.first_t = t
        self.last_t = t
        self.last_method = event.method

    def _first(self, name: str, value: Any) -> None:
        if name not in self.values:
            self.values[name] = value

    def _signaling(self, event: Event) -> None:
        state = state_value(event.value)
        if state == "stable":
            self.negotiations += 1
        if state != "closed":
            self.last_signaling = state

    def _connection_state(self, event: Event) -> None:
        state = state_value(event.value)
        self.connecting.see(state, event.timestamp)
        if state == "connected":
            if not self.connected:
                self.pair_pending = True
            self.connected = True

    def _ice_state(self, event: Event) -> None:
        state = state_value(event.value)
        self.checking.see(state, event.timestamp)
        self.ice_connected = self.ice_connected or state == "connected"

    def _gathering_state(self, event: Event) -> None:
        state = state_value(event.value)
        if self.gathering_done:
            return
        if state == "gathering":
            self.gathering_start = event.timestamp
        elif state == "complete":
            self.gathering_done = True

    def _gathered(self, event: Event) -> None:
        value = event.value
        if not self.gathering_done and self.gathering_start:
            relay = value.get("relayProtocol") if type(value) is dict else None
            name = _TURN_TRANSPORTS.get(relay) if type(relay) is str else None
            if name is not None:
                self._first(name, event.timestamp - self.gathering_start)
        self._candidate(value, "gathered")
        self.locations.candidate(event, gathered=True)

    def _added(self, event: Event) -> None:
        value = event.value
        if value is None:
            self.values["added_null_candidate"] = True
        candidate = self._candidate(value, "added")
        if candidate is not None and candidate.tcp_type == "passive":
            self.values["added_connectable_ice_tcp_candidate"] = True
        self.locations.candidate(event, gathered=False)

    def _candidate(self, value: Any, prefix: str) -> Any:
        line = value.get("candidate") if type(value) is dict else None
        if not truthy(line):
            return None
        candidate = parse_candidate(line)
        if candidate is None:
            return None
        kind = {"host": "host", "srflx": "srflx", "relay": "turn"}.get(candidate.type or "")
        if kind is not None:
            self.values[f"{prefix}_{kind}_candidate"] = True
        if candidate.is_mdns:
            self.values[f"{prefix}_mdns_candidate"] = True
        return candidate

    def _set_local(self, event: Event) -> None:
        self.local_description.call(event)
        value = event.value
        if type(value) is dict and value.get("type") == "offer":
            if self.offer_at is None:
                self.offer_at = event.timestamp
            if self.restart == 1:
                self.restart = 2

    def _set_remote(self, event: Event) -> None:
        self.remote_description.call(event)
        value = event.value
        if type(value) is not dict:
            return
        if value.get("type") == "answer":
            if self.offer_at is not None and self.signaling_delay is None:
                self.signaling_delay = event.timestamp - self.offer_at
            if self.restart == 2:
                self.restart = 3
        sdp = value.get("sdp")
        if type(sdp) is str and sdp:
            if "a=ice-lite" in sdp and "a=ice-lite" in sdp_lines(sdp):
                self.values["using_ice_lite"] = True
            if "passive" in sdp and any(c.tcp_type == "passive" for c in sdp_candidates(sdp)):
                self.values["added_connectable_ice_tcp_candidate"] = True

    def _create_offer(self, event: Event) -> None:
        value = event.value
        if type(value) is dict and value.get("iceRestart") is True:
            self.values["ice_restart"] = True
            if self.restart == 0:
                self.restart = 1

    def _create(self, event: Event) -> None:
        """The connection's configuration (its first ``create``)."""
        if self.configured:
            return
        self.configured = True
        config = event.value
        if type(config) is not dict:
            return
        values = self.values
        values["configured_always_negotiate_data_channels"] = config.get(
            "alwaysNegotiateDataChannels"
        )
        values["configured_bundle_policy"] = text(config.get("bundlePolicy"))
        servers = config.get("iceServers")
        if not truthy(servers) or type(servers) is not list:
            return
        values["configured_ice_servers"] = len(servers)
        values["configured_ice_transport_policy"] = config.get("iceTransportPolicy") == "relay"
        for server in servers:
            urls = server.get("urls") if type(server) is dict else None
            if not truthy(urls):
                continue
            for url in [urls] if type(urls) is str else urls if type(urls) is list else []:
                if type(url) is not str:
                    continue
                if url.startswith("stun:"):
                    values["configured_ice_servers_stun"] = True
                elif url.startswith("turns:"):
                    values["configured_ice_servers_turns"] = True
                elif url.startswith("turn:"):
                    if url.endswith("?transport=udp"):
                        values["configured_ice_servers_turn_udp"] = True
                    elif url.endswith("?transport=tcp"):
                        values["configured_ice_servers_turn_tcp"] = True

    def _unmute(self, event: Event) -> None:
        value = event.value
        if type(value) is str and value not in self.unmuted and len(self.unmuted) < MAX_UNMUTED:
            self.unmuted[value] = event.timestamp

    def _track_event(self, event: Event) -> None:
        self.event_tracks.event(event.method, event.value, event.timestamp)

    # -- getStats ---------------------------------------------------------------------

    def stats(self, event: Event, read: StatsRead | None) -> None:
        self._count(event)
        self.stats_events += 1
        if read is None:
            return
        reports = read.reports
        t = event.timestamp
        self._count_ids(reports, t)
        ids = read.ids
        if self.need_skew and ids.peer_connection is not None:
            stamp = reports[ids.peer_connection].get("timestamp")
            if is_number(stamp):
                self.values["clock_skew"] = js_round(t - stamp)
                self.need_skew = False
        transports = ids.transports
        if self.need_dtls and transports:
            self._dtls(reports, transports)
        transport = selected_transport(reports, transports) if transports else None
        pair = _pair_of(reports, transport)
        if self.locations.pending:
            self.locations.first_stats(reports, pair)
        if pair is not None and transport is not None:
            self._selected(t, reports, transport, pair)
        self._tracks(read, t)

    def _count_ids(self, reports: Result, t: float) -> None:
        """How many results each stats id was in (``stats_truncated``), counted per run
        of results with the same ids: one set comparison per result."""
        keys = reports.keys()
        if self.run_keys is not None and keys == self.run_keys:
            self.run_length += 1
            return
        self._flush_run()
        seen = self.seen_ids
        for stats_id in keys:
            if stats_id not in seen and len(seen) < MAX_COUNTED_IDS:
                seen[stats_id] = [0, t]
        self.run_keys = keys
        self.run_length = 1

    def _flush_run(self) -> None:
        if self.run_keys is None:
            return
        seen = self.seen_ids
        for stats_id in self.run_keys:  # type: ignore[attr-defined]
            counted = seen.get(stats_id)
            if counted is not None:
                counted[0] += self.run_length

    def _dtls(self, reports: Result, transports: list[str]) -> None:
        for transport_id in transports:
            report = reports[transport_id]
            if report.get("type") == "transport" and truthy(report.get("tlsVersion")):
                self.need_dtls = False
                self.values.update(
                    dtls_role=text(report.get("dtlsRole")),
                    dtls_version=text(report.get("tlsVersion")),
                    srtp_cipher=text(report.get("srtpCipher")),
                )
                return

    def _selected(self, t: float, reports: Result, transport: Report, pair: Report) -> None:
        self.last_selected = (t, transport)
        selected = self.selected
        pair_id = str(transport["selectedCandidatePairId"])
        if pair_id in selected or len(selected) < MAX_SELECTED_PAIRS:
            selected[pair_id] = pair
        if self.first_bytes is None:
            sent, received = transport.get("bytesSent"), transport.get("bytesReceived")
            if is_number(sent) and sent > 0 and is_number(received) and received > 0:
                self.first_bytes = (t, transport)
        if self.pair_pending:
            self.pair_pending = False
            self._first_pair(reports, pair)

    def _first_pair(self, reports: Result, pair: Report) -> None:
        local = linked_report(reports, pair, "localCandidateId")
        remote = linked_report(reports, pair, "remoteCandidateId")
        values = self.values
        if local is not None:
            values.update(
                first_candidate_pair_local_address=text(local.get("address")),
                first_candidate_pair_local_network_type=text(local.get("networkType")),
                first_candidate_pair_local_protocol=text(local.get("protocol")),
                first_candidate_pair_local_relay_protocol=text(local.get("relayProtocol")),
                first_candidate_pair_local_relay_url=text(local.get("url")),
                first_candidate_pair_local_type=text(local.get("candidateType")),
                first_candidate_pair_local_type_preference=shifted(local.get("priority"), 24),
            )
            priority = local.get("priority")
            if is_number(priority):
                values["first_candidate_pair_local_priority"] = priority
        if remote is not None:
            values.update(
                first_candidate_pair_remote_address=text(remote.get("address")),
                first_candidate_pair_remote_type=text(remote.get("candidateType")),
            )

    def _tracks(self, read: StatsRead, t: float) -> None:
        if not read.tracks:
            return
        reports = read.reports
        self.event_tracks.tie(read.tracks, reports)
        tracks = self.tracks
        for sample in read.tracks:
            stats_id = sample.track.stats_id
            features = tracks.get(stats_id)
            if features is None:
                if len(tracks) >= MAX_TRACK_ROWS:
                    self.tracks_omitted.add(stats_id)
                    continue
                features = tracks[stats_id] = TrackFeatures(sample.track, t)
            features.add(sample, reports, t)

    # -- the row ----------------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        values = self.values
        out: dict[str, Any] = {"id": text(self.pc_id)}
        out.update(
            start_time=self.first_t,
            duration=self.last_t - self.first_t,
            closed=self.last_method == "close",
            number_of_events=self.events,
            number_of_events_not_get_stats=self.events - self.stats_events,
            number_of_negotiations=self.negotiations,
            connected=self.connected,
            ice_connected=self.ice_connected,
            ice_restart=values.get("ice_restart", False),
            ice_restart_followed_by_set_remote_description=self.restart == 3,
            using_ice_lite=values.get("using_ice_lite", False),
            stats_truncated=self._stats_truncated(),
        )
        for prefix in ("added", "gathered"):
            for kind in ("host", "mdns", "srflx", "turn"):
                name = f"{prefix}_{kind}_candidate"
                out[name] = values.get(name, False)
        out["added_null_candidate"] = values.get("added_null_candidate", False)
        out["added_connectable_ice_tcp_candidate"] = values.get(
            "added_connectable_ice_tcp_candidate", False
        )
        if self.last_signaling is not None:
            out["pending_negotiation_at_end"] = self.last_signaling != "stable"
        out["connection_time"] = self.connecting.elapsed
        out["ice_connection_time"] = self.checking.elapsed
        out["signaling_delay"] = self.signaling_delay
        for prefix, description in (
            ("set_local_description", self.local_description),
            ("set_remote_description", self.remote_description),
        ):
            if description.delay is not None:
                out[f"{prefix}_delay"] = description.delay
                out[f"{prefix}_role"] = text(description.role)
        out.update(self._averages())
        out.update(values)
        out.update(self.locations.result())
        stun_rtt = out.get("average_stun_round_trip_time")
        rows = []
        for features in self.tracks.values():
            track = features.track
            features.event = self.event_tracks.by_stats_id.get(track.stats_id)
            if features.event is None:
                features.event = self.event_tracks.named(track.track_identifier)
            row = features.result(stun_rtt)
            if row["direction"] == "inbound" and features.event is not None:
                unmuted = self.unmuted.get(features.event.id)
                if unmuted is not None and unmuted >= features.event.start:
                    row["time_to_first_frame"] = int(unmuted - features.event.start)
            rows.append(row)
        row = present(out)
        row["tracks"] = rows
        return row

    def _stats_truncated(self) -> bool:
        self._flush_run()
        self.run_keys = None
        late = self.first_t + _INTERNALS_LATE_MS
        return any(
            count == _INTERNALS_SAMPLES and first > late for count, first in self.seen_ids.values()
        )

    def _averages(self) -> dict[str, Any]:
        if self.last_selected is None:
            return {}
        responses = total = 0.0
        for pair in self.selected.values():
            count, seconds = pluck(pair, "responsesReceived"), pluck(pair, "totalRoundTripTime")
            responses += count if is_number(count) else 0
            total += seconds if is_number(seconds) else 0
        out: dict[str, Any] = {}
        if responses:
            out["average_stun_round_trip_time"] = total / responses
        first = self.first_bytes
        last_t, last = self.last_selected
        if first is not None and first[0] < last_t:
            seconds = (last_t - first[0]) / 1000
            for name, field in (
                ("average_outbound_bitrate", "bytesSent"),
                ("average_inbound_bitrate", "bytesReceived"),
            ):
                now, then = last.get(field), first[1].get(field)
                if is_number(now) and is_number(then):
                    out[name] = (now - then) * 8 / seconds
        return out


def _first_failure(name: str) -> Callable[[ConnectionFeatures, Event], None]:
    """A handler keeping the error of the first failure of one API call."""

    def record(self: ConnectionFeatures, event: Event) -> None:
        self._first(name, error_text(event.value))

    return record


_HANDLERS: Final[dict[str, Callable[[ConnectionFeatures, Event], None]]] = {
    "onsignalingstatechange": ConnectionFeatures._signaling,
    "onconnectionstatechange": ConnectionFeatures._connection_state,
    "oniceconnectionstatechange": ConnectionFeatures._ice_state,
    "onicegatheringstatechange": ConnectionFeatures._gathering_state,
    "onicecandidate": ConnectionFeatures._gathered,
    "addIceCandidate": ConnectionFeatures._added,
    "setLocalDescription": ConnectionFeatures._set_local,
    "setLocalDescriptionOnSuccess": lambda self, event: self.local_description.success(event),
    "setRemoteDescription": ConnectionFeatures._set_remote,
    "setRemoteDescriptionOnSuccess": lambda self, event: self.remote_description.success(event),
    "createOffer": ConnectionFeatures._create_offer,
    "create": ConnectionFeatures._create,
    "addIceCandidateOnFailure": _first_failure("add_ice_candidate_failure"),
    "setLocalDescriptionOnFailure": _first_failure("set_local_description_failure"),
    "setRemoteDescriptionOnFailure": _first_failure("set_remote_description_failure"),
    "MediaStreamTrack.onunmute": ConnectionFeatures._unmute,
    "addTrack": ConnectionFeatures._track_event,
    "ontrack": ConnectionFeatures._track_event,
    "addTransceiver": ConnectionFeatures._track_event,
    "replaceTrack": ConnectionFeatures._track_event,
    "transceiverAdded": ConnectionFeatures._track_event,
    "transceiverModified": ConnectionFeatures._track_event,
}
