"""The summary's media statistics of one connection: totals of the interpreter's samples.

Nothing here reads a getStats report: every number is a sum, a time-weighted mean or
a quantile of the samples the interpreter gives, the same samples the viewer charts.
Per direction and kind (``recv_video``, ``send_audio``, ...):

- ``packets``, ``packets_lost``: the sums of the per-sample counts; ``loss_pct`` their
  ratio (received: lost / (received + lost); sent: lost / sent);
- ``rtt_ms``, ``jitter_ms``: mean, p95, max and count of every RTT / jitter sample;
- ``bitrate_kbps``: per track the time-weighted mean of its bitrate samples
  (Σ bitrate * interval / Σ interval), summed over the tracks;
- received video: freezes, their duration and dropped frames, summed; received audio:
  ``concealment_pct`` = Σ concealed samples / Σ samples received.
"""

from __future__ import annotations

from typing import Any

from rtcstats_server.analysis.samples import StatsRead, TrackSample
from rtcstats_server.analysis.sketch import QuantileSketch


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def sketch_dict(sketch: QuantileSketch) -> dict[str, Any] | None:
    """How the summary shows a series: mean, p95, max and the number of samples."""
    if not sketch.count:
        return None
    return {
        "mean": rounded(sketch.mean),
        "p95": rounded(sketch.quantile(0.95)),
        "max": rounded(sketch.maximum),
        "samples": sketch.count,
    }


class TrackTotals:
    """The sums of one track's samples."""

    __slots__ = (
        "concealed",
        "direction",
        "dropped",
        "freeze_s",
        "freezes",
        "kbit",
        "kind",
        "lost",
        "packets",
        "received_samples",
        "seconds",
    )

    def __init__(self, direction: str, kind: str) -> None:
        self.direction = direction
        self.kind = kind
        self.packets = 0.0
        self.lost = 0.0
        self.kbit = 0.0  # Σ bitrate * interval
        self.seconds = 0.0  # Σ interval of the bitrate samples
        self.freezes = 0.0
        self.freeze_s = 0.0
        self.dropped = 0.0
        self.concealed = 0.0
        self.received_samples = 0.0

    def add(self, sample: TrackSample) -> None:
        if sample.packets is not None:
            self.packets += sample.packets
        if sample.packets_lost is not None:
            self.lost += sample.packets_lost
        if sample.bitrate_kbps is not None and sample.interval_s is not None:
            self.kbit += sample.bitrate_kbps * sample.interval_s
            self.seconds += sample.interval_s
        if sample.total_samples is not None:
            self.received_samples += sample.total_samples
            self.concealed += sample.concealed_samples or 0
        if sample.freeze_count is not None:
            self.freezes += sample.freeze_count
        if sample.freeze_s is not None:
            self.freeze_s += sample.freeze_s
        if sample.frames_dropped is not None:
            self.dropped += sample.frames_dropped

    @property
    def kbps(self) -> float | None:
        return self.kbit / self.seconds if self.seconds > 0 else None


class _Series:
    __slots__ = ("jitter_ms", "rtt_ms")

    def __init__(self) -> None:
        self.rtt_ms = QuantileSketch()
        self.jitter_ms = QuantileSketch()


class MediaSummary:
    """Feed it a connection's ``StatsRead``s; ``result()`` is its ``media`` dict."""

    def __init__(self) -> None:
        self.tracks: dict[str, TrackTotals] = {}
        self.series: dict[tuple[str, str], _Series] = {}

    def add(self, read: StatsRead) -> None:
        tracks = self.tracks
        for sample in read.tracks:
            track = sample.track
            totals = tracks.get(track.stats_id)
            if totals is None:
                totals = tracks[track.stats_id] = TrackTotals(track.direction, track.kind)
            totals.add(sample)
            rtt, jitter = sample.rtt_ms, sample.jitter_ms
            if rtt is not None or jitter is not None:
                key = (track.direction, track.kind)
                series = self.series.get(key)
                if series is None:
                    series = self.series[key] = _Series()
                if rtt is not None:
                    series.rtt_ms.add(rtt)
                if jitter is not None:
                    series.jitter_ms.add(jitter)

    def result(self) -> dict[str, dict[str, Any]]:
        groups: dict[tuple[str, str], list[TrackTotals]] = {}
        for totals in self.tracks.values():
            groups.setdefault((totals.direction, totals.kind), []).append(totals)
        return {
            f"{direction}_{kind}": self._group(direction, kind, groups[direction, kind])
            for direction, kind in sorted(groups)
        }

    def _group(self, direction: str, kind: str, tracks: list[TrackTotals]) -> dict[str, Any]:
        packets = sum(t.packets for t in tracks)
        lost = sum(t.lost for t in tracks)
        whole = packets + lost if direction == "recv" else packets
        rates = [rate for t in tracks if (rate := t.kbps) is not None]
        series = self.series.get((direction, kind)) or _Series()
        out: dict[str, Any] = {
            "streams": len(tracks),
            "packets": int(packets),
            "packets_lost": int(lost),
            "loss_pct": rounded(100 * lost / whole) if whole > 0 else None,
            "rtt_ms": sketch_dict(series.rtt_ms),
            "jitter_ms": sketch_dict(series.jitter_ms),
            "bitrate_kbps": rounded(sum(rates), 1) if rates else None,
        }
        if direction == "recv" and kind == "video":
            out["freeze_count"] = int(sum(t.freezes for t in tracks))
            out["freeze_duration_s"] = rounded(sum(t.freeze_s for t in tracks), 3)
            out["frames_dropped"] = int(sum(t.dropped for t in tracks))
        if direction == "recv" and kind == "audio":
            samples = sum(t.received_samples for t in tracks)
            concealed = sum(t.concealed for t in tracks)
            out["concealment_pct"] = rounded(100 * concealed / samples) if samples > 0 else None
        return out
