"""The viewer's data: per peer connection, an event timeline and chart series.

Computed in one streaming pass over the event model (``dumps.reader``), so a dump of
any size and dialect costs the same bounded memory: each series keeps at most
``2 * buckets`` buckets (min, max, mean and sample count), and when a series would
need more, neighbouring buckets merge and the bucket width doubles. A series that
fits (a zoomed window, a short call) therefore keeps every sample, and a long one an
even downsampling that still shows spikes (min/max per bucket).

Blocking (decompression, JSON): run everything here in a worker thread.

Nothing here reads a getStats report: the series are the stats interpreter's samples
(interpreter.py), the ones the quality summary totals, so a chart and the summary
cannot disagree. ``series_values`` turns one interpreter read into series values; the
chart buckets and the full-resolution download (``samples``) both use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from math import isfinite
from operator import attrgetter
from typing import Any, Final

import orjson

from rtcstats_server.analysis.connection_card import ConnectionCard
from rtcstats_server.analysis.interpreter import StatsInterpreter, interpreted
from rtcstats_server.analysis.samples import (
    INTERVAL_METRICS,
    TRACK_METRICS,
    StatsRead,
    TrackSample,
    TransportSample,
)
from rtcstats_server.analysis.track_extras import (
    EXTRA_METRICS,
    bands,
    read_fields,
    track_extras,
)
from rtcstats_server.dumps.reader import (
    BACKEND_STATS_METHOD,
    ERROR_METHOD,
    STATS_METHOD,
    DumpReader,
    Event,
)
from rtcstats_server.exceptions import DumpFormatError

#: 4: per connection a summary card (connection_card), markers, more track series.
#: 3: series are the interpreter's (RTT once per measurement, loss from counters,
#: legacy stats, per-sample packet counts).
MODEL_VERSION: Final = 4

#: Metric name → (chart title, unit) of the charts, in their order; the download has
#: every series, charted or not (``packets``: the counts behind ``loss_pct``).
METRICS: Final[dict[str, tuple[str, str]]] = (
    {
        name: TRACK_METRICS[name]
        for name in (
            "bitrate_kbps",
            "loss_pct",
            "packets_lost",
            "rtt_ms",
            "jitter_ms",
            "fps",
            "frame_height",
            "audio_level",
            "concealment_pct",
        )
    }
    | EXTRA_METRICS
    | {"ice_checks": ("ICE checks while no pair is selected", "total so far")}
)
_TRACK_SERIES: Final = tuple(TRACK_METRICS)
#: A track sample's values of ``_TRACK_SERIES``, in that order (one C call).
_TRACK_VALUES: Final = attrgetter(*_TRACK_SERIES)
_TRANSPORT_LABEL: Final = "transport (selected candidate pair)"

#: Timeline entries kept per peer connection; past it only failures and state changes.
MAX_TIMELINE: Final = 3000
#: ... and past this, nothing more (a client flapping a state forever).
MAX_TIMELINE_ENTRIES: Final = 4000
#: Peer connections shown; events of further ones are only counted (``truncated``).
MAX_CONNECTIONS: Final = 100
#: Largest detail (SDP, candidate, JSON) carried inline by one timeline entry.
MAX_DETAIL_CHARS: Final = 200_000
#: Inline details per view model; later ones are fetched by their event number.
DETAIL_BUDGET_CHARS: Final = 6_000_000
#: Series per view model; past it new tracks are not charted (they still download).
MAX_SERIES: Final = 600
#: Vertical markers (failures, ICE restarts) per view model.
MAX_MARKERS: Final = 200
#: Candidate pairs whose checks are charted while none is selected.
MAX_CHECKED_PAIRS: Final = 4
#: Report ids listed per connection for the raw property chart.
MAX_REPORT_IDS: Final = 500
#: Band changes (quality limitation, codec, encoder, decoder) per view model.
MAX_BAND_CHANGES: Final = 3000
_TEXT_CHARS: Final = 180
#: Reading stops this long after a window's end (clocks of merged segments may step back).
_WINDOW_READ_PAST_MS: Final = 300_000.0

_STATE_SUFFIX: Final = "statechange"
_FAILED_STATES: Final = frozenset({"failed"})


# -- samples ------------------------------------------------------------------------


@dataclass(slots=True)
class Sample:
    """One value of one series: what the download lists, one line each."""

    t: float
    pc_id: str | None
    entity: str
    metric: str
    value: float
    #: The interval the value holds over (rates, counts); None for instant values.
    interval_ms: float | None = None


#: One series value: (entity, label, metric, value, interval in ms or None).
SeriesValue = tuple[str, str, str, float, float | None]


def series_values(read: StatsRead) -> Iterator[SeriesValue]:
    """Every series value of one getStats read: per track each value it has, per
    transport the selected pair's RTT and byte rates. ``interval`` is the time a rate
    or count holds over (None for instant values and unknown intervals)."""
    for sample in read.tracks:
        track = sample.track
        entity, label = track.key, track.label
        interval = sample.interval_s * 1000 if sample.interval_s is not None else None
        for metric, value in zip(_TRACK_SERIES, _TRACK_VALUES(sample), strict=True):
            if value is not None and isfinite(value):
                yield entity, label, metric, value, interval if metric in INTERVAL_METRICS else None
    if read.transport is not None:
        yield from transport_values(read.transport)


def transport_values(transport: TransportSample) -> Iterator[SeriesValue]:
    """The transport's series values: the selected pair's RTT and byte rates."""
    if transport.rtt_ms is not None:
        yield "transport", _TRANSPORT_LABEL, "rtt_ms", transport.rtt_ms, None
    interval = transport.interval_s * 1000 if transport.interval_s is not None else None
    if transport.sent_kbps is not None:
        yield "transport:send", "transport sent", "bitrate_kbps", transport.sent_kbps, interval
    if transport.received_kbps is not None:
        received = transport.received_kbps
        yield "transport:recv", "transport received", "bitrate_kbps", received, interval


def extra_values(
    sample: TrackSample, previous: dict[int, dict[str, float | None]]
) -> Iterator[tuple[str, str, str, float]]:
    """(entity, label, metric, value) of a track sample's further series
    (``track_extras``, frames dropped); ``previous`` keeps, per track, the fields its
    last report had, and is updated."""
    track = sample.track
    entity, label = track.key, track.label
    key = id(track)
    before = previous.get(key)
    now = previous[key] = read_fields(sample.report, track.kind, track.direction)
    for suffix, metric, value in track_extras(now, before):
        if suffix:
            yield f"{entity}:{suffix}", f"{label} {suffix}", metric, value
        else:
            yield entity, label, metric, value
    if sample.frames_dropped is not None and before is not None:
        yield entity, label, "frames_dropped", sample.frames_dropped


def available_outgoing_kbps(read: StatsRead) -> float | None:
    """The selected pair's ``availableOutgoingBitrate`` in this result, in kbps."""
    transport = read.transport
    pair = transport.pair if transport is not None else None
    found = read.reports.get(pair.id) if pair is not None else None
    value = found.get("availableOutgoingBitrate") if isinstance(found, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and isfinite(value):
        return value / 1000
    return None


def ice_checks(read: StatsRead) -> Iterator[tuple[str, str, float]]:
    """(entity, label, value): requests sent and responses received so far by the
    first ``MAX_CHECKED_PAIRS`` candidate pairs of a result (charted while none is
    selected)."""
    for pair_id in read.ids.pairs[:MAX_CHECKED_PAIRS]:
        pair = read.reports.get(pair_id)
        if not isinstance(pair, dict):
            continue
        for name, suffix in (("requestsSent", "requests"), ("responsesReceived", "responses")):
            value = pair.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                yield f"pair:{pair_id}:{suffix}", f"{pair_id} {suffix}", float(value)


def samples(
    events: Iterable[Event], start: float | None = None, end: float | None = None
) -> Iterator[tuple[Sample, str]]:
    """Every sample (with its series label) of the events, optionally in [start, end]:
    the charts' values at full resolution, for the download."""
    previous: dict[int, dict[str, float | None]] = {}
    for _, read in interpreted(events, MAX_CONNECTIONS):
        if read is None or (end is not None and read.t > end):
            continue
        t, pc_id = read.t, read.pc_id
        # extras compare with the previous report: seen before the window too
        extras = [
            (*extra, sample.interval_s * 1000 if sample.interval_s is not None else None)
            for sample in read.tracks
            for extra in extra_values(sample, previous)
        ]
        if start is not None and read.t < start:
            continue
        for entity, label, metric, value, interval in series_values(read):
            yield Sample(t, pc_id, entity, metric, value, interval), label
        for entity, label, metric, value, interval in extras:
            yield Sample(t, pc_id, entity, metric, value, interval), label
        available = available_outgoing_kbps(read)
        if available is not None:
            sample = Sample(t, pc_id, "transport", "available_outgoing_kbps", available)
            yield sample, _TRANSPORT_LABEL
        if read.transport is None or read.transport.pair is None:
            for entity, label, value in ice_checks(read):
                yield Sample(t, pc_id, entity, "ice_checks", value), label


# -- downsampling -------------------------------------------------------------------


class Buckets:
    """One series at bounded size: buckets of ``width`` ms from ``origin``; when more
    than ``cap`` buckets hold samples, neighbours merge (width doubled, as many times
    as it takes to fit). A series of at most ``cap`` samples keeps every one of them."""

    __slots__ = ("buckets", "cap", "origin", "width")

    def __init__(self, origin: float, width: float, cap: int) -> None:
        self.origin = origin
        self.width = width
        self.cap = cap
        #: index → [min, max, sum, count, sum of times]
        self.buckets: dict[int, list[float]] = {}

    def add(self, t: float, value: float) -> None:
        index = int((t - self.origin) // self.width)
        bucket = self.buckets.get(index)
        if bucket is None:
            self.buckets[index] = [value, value, value, 1.0, t]
            if len(self.buckets) > self.cap:
                self._merge()
            return
        if value < bucket[0]:
            bucket[0] = value
        if value > bucket[1]:
            bucket[1] = value
        bucket[2] += value
        bucket[3] += 1
        bucket[4] += t

    def _merge(self) -> None:
        # The smallest doubling that fits, found on the indexes alone: samples sparser
        # than the width would otherwise take several full merges that change nothing.
        factor = 2
        indexes = list(self.buckets)
        while len({index // factor for index in indexes}) > self.cap:
            factor *= 2
        merged: dict[int, list[float]] = {}
        for index, bucket in self.buckets.items():
            key = index // factor
            target = merged.get(key)
            if target is None:
                merged[key] = bucket
            else:
                if bucket[0] < target[0]:
                    target[0] = bucket[0]
                if bucket[1] > target[1]:
                    target[1] = bucket[1]
                target[2] += bucket[2]
                target[3] += bucket[3]
                target[4] += bucket[4]
        self.buckets = merged
        self.width *= factor

    def points(self) -> list[list[float]]:
        """``[t, min, max, mean]`` per bucket, t the mean time of its samples."""
        out = []
        for index in sorted(self.buckets):
            low, high, total, count, times = self.buckets[index]
            out.append([round(times / count, 1), low, high, total / count])
        return out

    @property
    def samples(self) -> int:
        return int(sum(bucket[3] for bucket in self.buckets.values()))


# -- timeline -----------------------------------------------------------------------


def marker_of(event: Event) -> str | None:
    """The label of a moment every chart marks with a vertical line, or None: a
    connection disconnected or failed, an ICE restart, a getUserMedia or SDP failure."""
    method, value = event.method, event.value
    if method.endswith(_STATE_SUFFIX) and method != "onsignalingstatechange":
        if value in ("disconnected", "failed"):
            return f"{method.removeprefix('on').removesuffix('statechange')} {value}"
        return None
    if method.endswith("OnFailure") or method.endswith("onfailure"):
        if "getUserMedia" in method or "getDisplayMedia" in method:
            return f"{method.rsplit('.', 1)[-1]}"
        if "Description" in method or method.startswith(("createOffer", "createAnswer")):
            return method
        return None
    if method == "restartIce" or (
        method == "createOffer" and isinstance(value, dict) and value.get("iceRestart") is True
    ):
        return "ICE restart"
    return None


def event_kind(event: Event) -> str:
    """failure / state / event / api: how the timeline colours and filters an entry."""
    method = event.method
    if method == ERROR_METHOD or method.endswith(("OnFailure", "error", "Error")):
        return "failure"
    if method.endswith(_STATE_SUFFIX):
        return "failure" if event.value in _FAILED_STATES else "state"
    if method.startswith("on"):
        return "event"
    return "api"


def _describe(value: Any) -> tuple[str, str | None]:
    """A one-line text for the timeline, and the full detail when the line cuts it."""
    if value is None:
        return "", None
    if isinstance(value, str):
        if len(value) <= _TEXT_CHARS and "\n" not in value:
            return value, None
        return value[:_TEXT_CHARS].replace("\n", " ") + "…", value
    if isinstance(value, dict):
        sdp = value.get("sdp")
        if isinstance(sdp, str):
            kind = value.get("type", "description")
            return f"{kind} ({sdp.count(chr(10))} SDP lines)", sdp
        candidate = value.get("candidate")
        if isinstance(candidate, str):
            text = candidate.removeprefix("candidate:")
            detail = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
            return text[:_TEXT_CHARS], detail
    try:
        compact = orjson.dumps(value, default=str).decode()
    except TypeError:
        compact = repr(value)
    if len(compact) <= _TEXT_CHARS:
        return compact, None
    full = orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode()
    return compact[:_TEXT_CHARS] + "…", full


class _TrackSeries:
    """A track's name and label, and its series by ``_TRACK_SERIES`` index once made."""

    __slots__ = ("bands", "buckets", "entity", "extra", "label")

    def __init__(self, entity: str, label: str) -> None:
        self.entity = entity
        self.label = label
        self.buckets: list[Buckets | None] = [None] * len(_TRACK_SERIES)
        #: The further series (``extra_values``) by (entity, metric), once made.
        self.extra: dict[tuple[str, str], Buckets | None] = {}
        #: Last text per band, to skip unchanged ones without a lookup.
        self.bands: dict[str, str] = {}


@dataclass(slots=True)
class _Group:
    pc_id: str | None
    timeline: list[list[Any]] = field(default_factory=list)
    omitted: int = 0
    stats: int = 0
    first: float | None = None
    last: float | None = None
    card: ConnectionCard = field(default_factory=ConnectionCard)
    #: Report id → type, of the getStats results (the raw property chart's choices).
    reports: dict[str, str] = field(default_factory=dict)
    ids_seen: object = None


class ViewModelBuilder:
    """Feed events in dump order; ``result()`` gives the JSON-ready view model.

    ``start``/``end`` (epoch ms) cut a window: only what happened inside it is kept,
    while reports before it still seed the rates. A consumer of the stats
    interpreter, like the summary: ``add`` runs its own interpreter, a pass feeding
    several consumers calls ``consume``.
    """

    max_connections = MAX_CONNECTIONS

    def __init__(self, buckets: int, start: float | None = None, end: float | None = None) -> None:
        self.cap = 2 * buckets
        self.start = start
        self.end = end
        self._interpreter: StatsInterpreter | None = None
        self.series: dict[tuple[str | None, str, str], Buckets] = {}
        self.labels: dict[tuple[str | None, str], str] = {}
        #: Per track (the interpreter's Track, by identity: it lives as long as the
        #: pass), its series.
        self._tracks: dict[int, _TrackSeries] = {}
        self.groups: dict[str | None, _Group] = {}
        self.events = 0
        self.stats_events = 0
        self.backend_stats = 0
        self.series_dropped = 0
        #: Events of connections past MAX_CONNECTIONS, not shown.
        self.connection_events_omitted = 0
        self.detail_budget = DETAIL_BUDGET_CHARS
        self.first: float | None = None
        self.last: float | None = None
        #: The earliest time in the whole dump, window or not: where "+00:00" is.
        self.session_first: float | None = None
        self.series_first: float | None = None
        self.series_last: float | None = None
        #: [t, label, pc_id] of the moments the charts mark (``marker_of``).
        self.markers: list[list[Any]] = []
        #: (pc_id, track label, band) → [[t, text], ...] each time the text changed.
        self.bands: dict[tuple[str | None, str, str], list[list[Any]]] = {}
        self.band_changes = 0
        #: Per track (by identity), the fields of its previous report (``read_fields``).
        self._previous: dict[int, dict[str, float | None]] = {}
        # Finest bucket: full resolution for a window, 100 ms for a whole session.
        span = (end - start) if start is not None and end is not None else None
        self.width = max(span / self.cap, 1.0) if span else 100.0

    def _inside(self, t: float) -> bool:
        return (self.start is None or t >= self.start) and (self.end is None or t <= self.end)

    def add(self, event: Event) -> None:
        interpreter = self._interpreter
        if interpreter is None:
            interpreter = self._interpreter = StatsInterpreter(self.max_connections)
        self.consume(event, interpreter.read(event))

    def consume(self, event: Event, read: StatsRead | None) -> None:
        index = self.events
        self.events += 1
        t = event.timestamp
        method = event.method
        if method == BACKEND_STATS_METHOD:
            self.backend_stats += 1
            return
        if t > 0 and (self.session_first is None or t < self.session_first):
            self.session_first = t
        inside = self._inside(t)
        if inside and t > 0:
            self.first = t if self.first is None or t < self.first else self.first
            self.last = t if self.last is None or t > self.last else self.last
        group = self.groups.get(event.pc_id)
        if group is None:
            if event.pc_id is not None and len(self.groups) >= MAX_CONNECTIONS:
                self.connection_events_omitted += 1
                self.stats_events += method == STATS_METHOD
                return
            group = self.groups[event.pc_id] = _Group(event.pc_id)
        if inside and t > 0:
            group.first = t if group.first is None else min(group.first, t)
            group.last = t if group.last is None else max(group.last, t)
        if method == STATS_METHOD:
            self.stats_events += 1
            if read is not None:
                group.card.stats(read)
                if len(group.reports) < MAX_REPORT_IDS and read.ids is not group.ids_seen:
                    group.ids_seen = read.ids  # shared by every result with the same ids
                    for report_id, report in read.reports.items():
                        if report_id not in group.reports and isinstance(report, dict):
                            group.reports[report_id] = str(report.get("type") or "")
            if self.end is not None and t > self.end:
                return
            group.stats += 1
            if read is not None and (self.start is None or t >= self.start):
                self._samples(read, group)
            return
        group.card.event(event)
        if inside:
            self._timeline(group, event, index)
            marker = marker_of(event)
            if marker is not None and len(self.markers) < MAX_MARKERS:
                self.markers.append([t, marker, event.pc_id])

    def _samples(self, read: StatsRead, group: _Group) -> None:
        """Each value of this read into its series. Per track, its series are found
        once (``_TrackSeries``); the rest of the read goes by ``series_values``."""
        t, pc_id = read.t, read.pc_id
        charted = False
        known = self._tracks
        for sample in read.tracks:
            track = sample.track
            slots = known.get(id(track))
            if slots is None:
                slots = known[id(track)] = _TrackSeries(track.key, track.label)
            buckets = slots.buckets
            for index, value in enumerate(_TRACK_VALUES(sample)):
                if value is None or not isfinite(value):
                    continue
                series = buckets[index]
                if series is None:
                    series = buckets[index] = self._series(
                        pc_id, slots.entity, slots.label, _TRACK_SERIES[index], t
                    )
                    if series is None:
                        continue
                series.add(t, value)
                charted = True
            self._extras(pc_id, t, sample, slots)
        transport = read.transport
        if transport is not None:
            available = available_outgoing_kbps(read)
            if available is not None:
                key = (pc_id, "transport", "available_outgoing_kbps")
                series = self.series.get(key) or self._series(
                    pc_id, "transport", _TRANSPORT_LABEL, "available_outgoing_kbps", t
                )
                if series is not None:
                    series.add(t, available)
            for entity, label, metric, value, _ in transport_values(transport):
                series = self.series.get((pc_id, entity, metric)) or self._series(
                    pc_id, entity, label, metric, t
                )
                if series is not None:
                    series.add(t, value)
                    charted = True
        if transport is None or transport.pair is None:
            charted = self._checks(read, group) or charted
        if charted:
            if self.series_first is None or t < self.series_first:
                self.series_first = t
            if self.series_last is None or t > self.series_last:
                self.series_last = t

    def _checks(self, read: StatsRead, group: _Group) -> bool:
        """While no pair is selected, each pair's connectivity checks: requests sent
        and responses received so far (a connection that never connects shows its
        checks going unanswered)."""
        charted = False
        pc_id, t = read.pc_id, read.t
        for entity, plain, value in ice_checks(read):
            series = self.series.get((pc_id, entity, "ice_checks"))
            if series is None:
                pair_id, suffix = entity[5:].rsplit(":", 1)
                row = group.card.pairs.get(pair_id) or {}
                name = f"{row.get('local', '?')} → {row.get('remote', '?')}"
                label = f"{name} {suffix}" if row else plain
                series = self._series(pc_id, entity, label, "ice_checks", t)
            if series is not None:
                series.add(t, value)
                charted = True
        return charted

    def _extras(
        self, pc_id: str | None, t: float, sample: TrackSample, slots: _TrackSeries
    ) -> None:
        """The track's further series (``track_extras``) and band changes."""
        known = slots.extra
        for entity, label, metric, value in extra_values(sample, self._previous):
            key = (entity, metric)
            if key in known:
                series = known[key]
            else:
                series = known[key] = self._series(pc_id, entity, label, metric, t)
            if series is not None:
                series.add(t, value)
        last = slots.bands
        codec = sample.track.codec
        if codec is not None and last.get("codec") != codec:
            last["codec"] = codec
            self._band(pc_id, slots.label, "codec", t, codec)
        for band, text in bands(sample.report):
            if last.get(band) != text:
                last[band] = text
                self._band(pc_id, slots.label, band, t, text)

    def _band(self, pc_id: str | None, label: str, band: str, t: float, text: str) -> None:
        changes = self.bands.setdefault((pc_id, label, band), [])
        if (changes and changes[-1][1] == text) or self.band_changes >= MAX_BAND_CHANGES:
            return
        self.band_changes += 1
        changes.append([t, text])

    def _series(
        self, pc_id: str | None, entity: str, label: str, metric: str, t: float
    ) -> Buckets | None:
        """A new series, or None past ``MAX_SERIES`` (counted: each value it loses)."""
        if len(self.series) >= MAX_SERIES:
            self.series_dropped += 1
            return None
        origin = self.start if self.start is not None else t
        series = self.series[pc_id, entity, metric] = Buckets(origin, self.width, self.cap)
        self.labels.setdefault((pc_id, entity), label)
        return series

    def _timeline(self, group: _Group, event: Event, index: int) -> None:
        kind = event_kind(event)
        listed = len(group.timeline)
        if listed >= MAX_TIMELINE and (
            kind not in ("failure", "state") or listed >= MAX_TIMELINE_ENTRIES
        ):
            group.omitted += 1
            return
        text, detail = _describe(event.value)
        if detail is not None:
            if len(detail) > MAX_DETAIL_CHARS or len(detail) > self.detail_budget:
                detail = None  # fetched on demand by event number
                text = text or "(details)"
                kind_detail = "remote"
            else:
                self.detail_budget -= len(detail)
                kind_detail = "inline"
        else:
            kind_detail = ""
        entry = [event.timestamp, event.method, kind, text, detail, index, kind_detail]
        group.timeline.append(entry)

    def result(self) -> dict[str, Any]:
        groups = []
        for pc_id, group in self.groups.items():
            series = []
            for (series_pc, entity, metric), buckets in self.series.items():
                if series_pc != pc_id:
                    continue
                series.append(
                    {
                        "entity": entity,
                        "label": self.labels.get((pc_id, entity), entity),
                        "metric": metric,
                        "samples": buckets.samples,
                        "width_ms": buckets.width,
                        "points": buckets.points(),
                    }
                )
            if not series and not group.timeline and not group.omitted:
                continue
            groups.append(
                {
                    "pc_id": pc_id,
                    "first": group.first,
                    "last": group.last,
                    "stats": group.stats,
                    "timeline": group.timeline,
                    "omitted": group.omitted,
                    "series": series,
                    "card": group.card.result() if pc_id is not None else None,
                    "reports": group.reports,
                    "bands": [
                        {"label": label, "band": band, "changes": changes}
                        for (band_pc, label, band), changes in self.bands.items()
                        if band_pc == pc_id
                    ],
                }
            )
        # Session-wide events (getUserMedia, identity) first, then connections by start.
        groups.sort(key=lambda g: (g["pc_id"] is not None, g["first"] or 0.0))
        return {
            "version": MODEL_VERSION,
            "window": [self.start, self.end] if self.start is not None else None,
            "buckets": self.cap,
            "first": self.first,
            "last": self.last,
            "session_first": self.session_first,
            "series_first": self.series_first,
            "series_last": self.series_last,
            "events": self.events,
            "stats_events": self.stats_events,
            "backend_stats": self.backend_stats,
            "series_dropped": self.series_dropped,
            "connection_events_omitted": self.connection_events_omitted,
            "truncated": bool(
                self.series_dropped
                or self.connection_events_omitted
                or any(group["omitted"] for group in groups)
            ),
            "groups": groups,
            "markers": self.markers,
        }


def build_view_model(
    chunks: Iterable[bytes],
    buckets: int,
    start: float | None = None,
    end: float | None = None,
) -> dict[str, Any]:
    """The view model of a dump's chunks (any layout, compressed or not).

    An unreadable dump gives a model with ``error`` set; damage inside it is listed
    in ``errors`` and everything readable is still shown.
    """
    builder = ViewModelBuilder(buckets, start, end)
    try:
        reader = DumpReader(chunks)
    except DumpFormatError as exc:
        return {**builder.result(), "error": str(exc), "errors": [], "info": {}}
    for event in reader:
        if end is not None and event.timestamp > end + _WINDOW_READ_PAST_MS:
            break  # a zoomed window is complete; the rest of the dump cannot be inside it
        builder.add(event)
    info = reader.info
    return {
        **builder.result(),
        "error": None,
        "errors": reader.errors[:20],
        "info": {
            "layout": info.layout,
            "client_protocol": info.client_protocol,
            "user_agent": info.user_agent,
        },
    }


#: Values one property download gives at most (a day of 1 s samples).
MAX_PROPERTY_VALUES: Final = 86_400


def report_property(
    events: Iterable[Event], pc_id: str | None, report_id: str, name: str
) -> Iterator[tuple[float, Any]]:
    """``(t, value)`` of property ``name`` of report ``report_id`` in every getStats
    result of connection ``pc_id``: any raw property, charted on demand. Values are
    as reported (numbers, strings, booleans); results without it give nothing."""
    given = 0
    for event in events:
        if event.method != STATS_METHOD or event.pc_id != pc_id:
            continue
        reports = event.value
        report = reports.get(report_id) if isinstance(reports, dict) else None
        if not isinstance(report, dict) or name not in report:
            continue
        value = report[name]
        if not isinstance(value, int | float | str | bool) or value is None:
            continue
        yield event.timestamp, value
        given += 1
        if given >= MAX_PROPERTY_VALUES:
            return


def find_event(chunks: Iterable[bytes], index: int) -> Event | None:
    """The ``index``-th event of a dump (the number the timeline links carry)."""
    for number, event in enumerate(DumpReader(chunks)):
        if number == index:
            return event
    return None
