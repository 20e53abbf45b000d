"""The viewer's data: per peer connection, an event timeline and chart series.

Computed in one streaming pass over the event model (``dumps.reader``), so a dump of
any size and dialect costs the same bounded memory: each series keeps at most
``2 * buckets`` buckets (min, max, mean and sample count), and when a series would
need more, neighbouring buckets merge and the bucket width doubles. A series that
fits (a zoomed window, a short call) therefore keeps every sample, and a long one an
even downsampling that still shows spikes (min/max per bucket).

Blocking (decompression, JSON): run everything here in a worker thread.

``samples()`` is the one place that turns getStats reports into metric values; the
chart buckets and the full-resolution download both read from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from rtcstats_server.dumps.reader import (
    BACKEND_STATS_METHOD,
    ERROR_METHOD,
    STATS_METHOD,
    DumpReader,
    Event,
)
from rtcstats_server.exceptions import DumpFormatError

MODEL_VERSION: Final = 2

#: Metric name → (chart title, unit); the order is the order of the charts.
METRICS: Final[dict[str, tuple[str, str]]] = {
    "bitrate_kbps": ("Bitrate", "kbps"),
    "loss_pct": ("Packet loss", "%"),
    "rtt_ms": ("Round-trip time", "ms"),
    "jitter_ms": ("Jitter", "ms"),
    "fps": ("Frames per second", "fps"),
    "frame_height": ("Resolution (frame height)", "px"),
    "audio_level": ("Audio level", "0..1"),
    "concealment_pct": ("Audio concealment", "%"),
}

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
#: Tracks remembered per peer connection for rate computation (an SFU's hundreds).
MAX_ENTITIES_PER_PC: Final = 256
_TEXT_CHARS: Final = 180
#: Reading stops this long after a window's end (clocks of merged segments may step back).
_WINDOW_READ_PAST_MS: Final = 300_000.0

_STATE_SUFFIX: Final = "statechange"
_FAILED_STATES: Final = frozenset({"failed"})
_CHARTED_TYPES: Final = frozenset(
    {
        "inbound-rtp",
        "outbound-rtp",
        "remote-inbound-rtp",
        "media-source",
        "candidate-pair",
        "transport",
        "ssrc",
    }
)


def _num(value: object) -> float | None:
    """Numbers, and the numeric strings of Chrome's legacy (goog) stats."""
    if type(value) is float or type(value) is int:
        return float(value)
    if type(value) is str and value:
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


# -- samples ------------------------------------------------------------------------


@dataclass(slots=True)
class Sample:
    t: float
    pc_id: str | None
    entity: str
    metric: str
    value: float


@dataclass(slots=True)
class _Previous:
    at: float
    counters: dict[str, float]


@dataclass(slots=True)
class _PcSampler:
    """Turns one connection's successive reports into metric values (rates need the
    previous counters of the same report)."""

    pc_id: str | None
    previous: dict[str, _Previous] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def _rate(
        self, key: str, at: float, counters: dict[str, float | None]
    ) -> tuple[float, dict[str, float]] | None:
        """Seconds since the last report of ``key`` and the counter deltas."""
        now = {name: value for name, value in counters.items() if value is not None}
        before = self.previous.get(key)
        if before is None and len(self.previous) >= MAX_ENTITIES_PER_PC:
            return None
        self.previous[key] = _Previous(at, now)
        if before is None:
            return None
        seconds = (at - before.at) / 1000
        if seconds <= 0:
            return None
        deltas = {
            name: value - before.counters[name]
            for name, value in now.items()
            if name in before.counters and value >= before.counters[name]
        }
        return seconds, deltas

    def reports(self, t: float, reports: dict[str, Any]) -> Iterator[tuple[str, str, float]]:
        """(entity, metric, value) for one getStats result."""
        selected: str | None = None
        for report in reports.values():
            if type(report) is dict and report.get("type") == "transport":
                pair = report.get("selectedCandidatePairId")
                if type(pair) is str:
                    selected = pair
        for report_id, report in reports.items():
            if type(report) is not dict:
                continue
            kind = report.get("type")
            if kind not in _CHARTED_TYPES:
                continue
            at = _num(report.get("timestamp")) or t
            if kind == "inbound-rtp":
                yield from self._inbound(report_id, report, at)
            elif kind == "outbound-rtp":
                yield from self._outbound(report_id, report, at)
            elif kind == "remote-inbound-rtp":
                yield from self._remote_inbound(report_id, report)
            elif kind == "media-source":
                level = _num(report.get("audioLevel"))
                if level is not None and report.get("kind") == "audio":
                    source = self._entity(f"src:{report_id}", "send audio source")
                    yield source, "audio_level", level
            elif kind == "candidate-pair":
                if self._is_selected(report_id, report, selected):
                    yield from self._pair(report_id, report, at)
            elif kind == "ssrc":
                yield from self._legacy_ssrc(report_id, report, at)

    def _entity(self, key: str, label: str) -> str:
        if key not in self.labels:
            self.labels[key] = label
        return key

    @staticmethod
    def _media_kind(report: dict[str, Any]) -> str:
        kind = report.get("kind") or report.get("mediaType")
        return kind if isinstance(kind, str) else "media"

    def _stream_key(self, direction: str, report_id: str, report: dict[str, Any]) -> str:
        ssrc = report.get("ssrc")
        kind = self._media_kind(report)
        name = str(ssrc) if ssrc is not None else report_id
        rid = report.get("rid")
        label = f"{direction} {kind} {name}" + (f" rid {rid}" if isinstance(rid, str) else "")
        return self._entity(f"{direction}:{kind}:{name}", label)

    def _inbound(
        self, report_id: str, report: dict[str, Any], at: float
    ) -> Iterator[tuple[str, str, float]]:
        key = self._stream_key("recv", report_id, report)
        jitter = _num(report.get("jitter"))
        if jitter is not None:
            yield key, "jitter_ms", jitter * 1000
        level = _num(report.get("audioLevel"))
        if level is not None:
            yield key, "audio_level", level
        height = _num(report.get("frameHeight"))
        if height is not None:
            yield key, "frame_height", height
        fps = _num(report.get("framesPerSecond"))
        rate = self._rate(
            key,
            at,
            {
                "bytes": _num(report.get("bytesReceived")),
                "packets": _num(report.get("packetsReceived")),
                "lost": _num(report.get("packetsLost")),
                "frames": _num(report.get("framesDecoded")),
                "concealed": _num(report.get("concealedSamples")),
                "samples": _num(report.get("totalSamplesReceived")),
            },
        )
        if fps is not None:
            yield key, "fps", fps
        if rate is None:
            return
        seconds, delta = rate
        if "bytes" in delta:
            yield key, "bitrate_kbps", delta["bytes"] * 8 / 1000 / seconds
        if "packets" in delta and "lost" in delta and delta["packets"] + delta["lost"] > 0:
            yield key, "loss_pct", 100 * delta["lost"] / (delta["packets"] + delta["lost"])
        if fps is None and "frames" in delta:
            yield key, "fps", delta["frames"] / seconds
        if delta.get("samples"):
            yield key, "concealment_pct", 100 * delta.get("concealed", 0) / delta["samples"]

    def _outbound(
        self, report_id: str, report: dict[str, Any], at: float
    ) -> Iterator[tuple[str, str, float]]:
        key = self._stream_key("send", report_id, report)
        height = _num(report.get("frameHeight"))
        if height is not None:
            yield key, "frame_height", height
        fps = _num(report.get("framesPerSecond"))
        if fps is not None:
            yield key, "fps", fps
        rate = self._rate(
            key,
            at,
            {"bytes": _num(report.get("bytesSent")), "frames": _num(report.get("framesEncoded"))},
        )
        if rate is None:
            return
        seconds, delta = rate
        if "bytes" in delta:
            yield key, "bitrate_kbps", delta["bytes"] * 8 / 1000 / seconds
        if fps is None and "frames" in delta:
            yield key, "fps", delta["frames"] / seconds

    def _remote_inbound(
        self, report_id: str, report: dict[str, Any]
    ) -> Iterator[tuple[str, str, float]]:
        """What the far end says about what we send: attributed to our sending stream."""
        key = self._stream_key("send", report_id, report)
        rtt = _num(report.get("roundTripTime"))
        if rtt is not None:
            yield key, "rtt_ms", rtt * 1000
        jitter = _num(report.get("jitter"))
        if jitter is not None:
            yield key, "jitter_ms", jitter * 1000
        fraction = _num(report.get("fractionLost"))
        if fraction is not None:
            yield key, "loss_pct", fraction * 100

    @staticmethod
    def _is_selected(report_id: str, report: dict[str, Any], selected: str | None) -> bool:
        if selected is not None:
            return report_id == selected
        if report.get("selected") is True:  # Firefox
            return True
        return report.get("nominated") is True and report.get("state") == "succeeded"

    def _pair(
        self, report_id: str, report: dict[str, Any], at: float
    ) -> Iterator[tuple[str, str, float]]:
        key = self._entity("transport", "transport (selected candidate pair)")
        rtt = _num(report.get("currentRoundTripTime"))
        if rtt is not None:
            yield key, "rtt_ms", rtt * 1000
        # Keyed by pair: a switch of the selected pair restarts the byte counters.
        rate = self._rate(
            f"pair:{report_id}",
            at,
            {"sent": _num(report.get("bytesSent")), "received": _num(report.get("bytesReceived"))},
        )
        if rate is None:
            return
        seconds, delta = rate
        if "sent" in delta:
            sent = self._entity("transport:send", "transport sent")
            yield sent, "bitrate_kbps", delta["sent"] * 8 / 1000 / seconds
        if "received" in delta:
            received = self._entity("transport:recv", "transport received")
            yield received, "bitrate_kbps", delta["received"] * 8 / 1000 / seconds

    def _legacy_ssrc(
        self, report_id: str, report: dict[str, Any], at: float
    ) -> Iterator[tuple[str, str, float]]:
        """Chrome's pre-standard ``ssrc`` reports (goog* names, numbers as strings)."""
        sending = report_id.endswith("_send") or "bytesSent" in report
        direction = "send" if sending else "recv"
        key = self._stream_key(direction, report_id, report)
        rtt = _num(report.get("googRtt"))
        if rtt is not None and rtt >= 0:
            yield key, "rtt_ms", rtt
        jitter = _num(report.get("googJitterReceived"))
        if jitter is not None and jitter >= 0:
            yield key, "jitter_ms", jitter
        level = _num(report.get("audioInputLevel" if sending else "audioOutputLevel"))
        if level is not None:
            yield key, "audio_level", level / 32767
        suffix = "Sent" if sending else "Received"
        fps = _num(report.get(f"googFrameRate{suffix}"))
        if fps is not None:
            yield key, "fps", fps
        height = _num(report.get(f"googFrameHeight{suffix}"))
        if height is not None:
            yield key, "frame_height", height
        rate = self._rate(
            key,
            at,
            {
                "bytes": _num(report.get("bytesSent" if sending else "bytesReceived")),
                "packets": _num(report.get("packetsReceived")),
                "lost": _num(report.get("packetsLost")),
            },
        )
        if rate is None:
            return
        seconds, delta = rate
        if "bytes" in delta:
            yield key, "bitrate_kbps", delta["bytes"] * 8 / 1000 / seconds
        if not sending and "packets" in delta and "lost" in delta:
            total = delta["packets"] + delta["lost"]
            if total > 0:
                yield key, "loss_pct", 100 * delta["lost"] / total


class SampleSource:
    """Metric samples of every connection, with each series' readable label."""

    def __init__(self) -> None:
        self.samplers: dict[str | None, _PcSampler] = {}

    def label(self, pc_id: str | None, entity: str) -> str:
        sampler = self.samplers.get(pc_id)
        return sampler.labels.get(entity, entity) if sampler else entity

    def of(self, event: Event) -> Iterator[Sample]:
        sampler = self.samplers.get(event.pc_id)
        if sampler is None:
            if len(self.samplers) >= MAX_CONNECTIONS:
                return  # as in the view model: connections past the cap are not charted
            sampler = self.samplers[event.pc_id] = _PcSampler(event.pc_id)
        t = event.timestamp
        for entity, metric, value in sampler.reports(t, event.stats):
            if math.isfinite(value):
                yield Sample(t, event.pc_id, entity, metric, value)


def samples(
    events: Iterable[Event], start: float | None = None, end: float | None = None
) -> Iterator[tuple[Sample, str]]:
    """Every sample (with its series label) of the events, optionally in [start, end]."""
    source = SampleSource()
    for event in events:
        if event.method != STATS_METHOD:
            continue
        if end is not None and event.timestamp > end:
            continue
        for sample in source.of(event):
            if start is None or sample.t >= start:
                yield sample, source.label(sample.pc_id, sample.entity)


# -- downsampling -------------------------------------------------------------------


class Buckets:
    """One series at bounded size: buckets of ``width`` ms from ``origin``; when more
    than ``cap`` buckets hold samples, neighbours merge pairwise (width doubled). A
    series of at most ``cap`` samples thus keeps every one of them."""

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
            while len(self.buckets) > self.cap:
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
        merged: dict[int, list[float]] = {}
        for index, bucket in self.buckets.items():
            target = merged.get(index // 2)
            if target is None:
                merged[index // 2] = bucket
            else:
                target[0] = min(target[0], bucket[0])
                target[1] = max(target[1], bucket[1])
                target[2] += bucket[2]
                target[3] += bucket[3]
                target[4] += bucket[4]
        self.buckets = merged
        self.width *= 2

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


@dataclass(slots=True)
class _Group:
    pc_id: str | None
    timeline: list[list[Any]] = field(default_factory=list)
    omitted: int = 0
    stats: int = 0
    first: float | None = None
    last: float | None = None


class ViewModelBuilder:
    """Feed events in dump order; ``result()`` gives the JSON-ready view model.

    ``start``/``end`` (epoch ms) cut a window: only what happened inside it is kept,
    while reports before it still seed the rates.
    """

    def __init__(self, buckets: int, start: float | None = None, end: float | None = None) -> None:
        self.cap = 2 * buckets
        self.start = start
        self.end = end
        self.source = SampleSource()
        self.series: dict[tuple[str | None, str, str], Buckets] = {}
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
        # Finest bucket: full resolution for a window, 100 ms for a whole session.
        span = (end - start) if start is not None and end is not None else None
        self.width = max(span / self.cap, 1.0) if span else 100.0

    def _inside(self, t: float) -> bool:
        return (self.start is None or t >= self.start) and (self.end is None or t <= self.end)

    def add(self, event: Event) -> None:
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
            if self.end is not None and t > self.end:
                return
            group.stats += 1
            for sample in self.source.of(event):
                if self._inside(sample.t):
                    self._sample(sample)
            return
        if inside:
            self._timeline(group, event, index)

    def _sample(self, sample: Sample) -> None:
        t = sample.t
        if self.series_first is None or t < self.series_first:
            self.series_first = t
        if self.series_last is None or t > self.series_last:
            self.series_last = t
        key = (sample.pc_id, sample.entity, sample.metric)
        series = self.series.get(key)
        if series is None:
            if len(self.series) >= MAX_SERIES:
                self.series_dropped += 1
                return
            origin = self.start if self.start is not None else sample.t
            series = self.series[key] = Buckets(origin, self.width, self.cap)
        series.add(sample.t, sample.value)

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
                        "label": self.source.label(pc_id, entity),
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


def find_event(chunks: Iterable[bytes], index: int) -> Event | None:
    """The ``index``-th event of a dump (the number the timeline links carry)."""
    for number, event in enumerate(DumpReader(chunks)):
        if number == index:
            return event
    return None
