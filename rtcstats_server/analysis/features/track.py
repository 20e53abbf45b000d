"""Track features: one row per RTP stream the stats interpreter follows.

A row is one ``inbound-rtp`` or ``outbound-rtp`` report (or a legacy ``ssrc`` one),
keyed by its stats id, so a simulcast sender gives one row per layer (``rid``,
``encoding_index`` tell them apart). The peer starts from the tracks the page's events
name (``addTrack``, ``ontrack``, ``addTransceiver``, ``replaceTrack``) and ties each
to the first stats report about it; we follow the same ties (``EventTracks``) for the
start of a track and its identifier, so the rows the peer has carry its values. Ours
has rows the peer has not (layers past the first, streams no event named) and none
for a track that never had stats (nothing was sent or received).

Everything is computed as the results stream by: per track, its first codec, counts
of the resolutions it had, and its last report; the "last result" features are read
from that report when the pass ends.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Final

from rtcstats_server.analysis.features.values import MAX_TEXT, present, text
from rtcstats_server.analysis.jsvalues import divide, is_number, pluck, truthy
from rtcstats_server.analysis.reports import Report, Result, number
from rtcstats_server.analysis.samples import Track, TrackSample
from rtcstats_server.analysis.scores import audio_score, video_score
from rtcstats_server.analysis.tracks import linked_report

#: The peer's direction names for ours.
DIRECTIONS: Final = {"send": "outbound", "recv": "inbound"}
#: Event tracks remembered per connection (an SFU adds and removes hundreds).
MAX_EVENT_TRACKS: Final = 512
#: Distinct frame widths (and heights) counted per track; later new sizes are not.
MAX_SIZES: Final = 256
#: A flush interval the peer calls periodic: getStats every ~1 s sees a 4 s cadence
#: between 3 and 5 s.
#: (Two names, not a tuple: mypyc, as of 2.4, reads a ``Final`` tuple of floats back as
#: unset.)
_FLUSH_PERIOD_MIN_MS: Final = 3000.0
_FLUSH_PERIOD_MAX_MS: Final = 5000.0

#: Legacy (goog) stats spell what the standard reports count like this, by direction.
_LEGACY_NAMES: Final[dict[str, tuple[str, str]]] = {
    "frameWidth": ("googFrameWidthSent", "googFrameWidthReceived"),
    "frameHeight": ("googFrameHeightSent", "googFrameHeightReceived"),
    "nackCount": ("googNacksReceived", "googNacksSent"),
    "pliCount": ("googPlisReceived", "googPlisSent"),
    "firCount": ("googFirsReceived", "googFirsSent"),
}


def parse_track(value: object) -> tuple[str, str] | None:
    """(kind, track id) of a track as a client serialised it: rtcstats-js's
    ``[kind, id, label, ...streams]``, or the jitsi and 2015 clients'
    ``"audio:<id> stream:<id>"``."""
    if type(value) is list and len(value) > 1:
        kind, track_id = value[0], value[1]
        if type(kind) is str and type(track_id) is str:
            return kind, track_id
        return None
    if type(value) is str and ":" in value:
        head = value.split(" ", 1)[0]
        kind, _, track_id = head.partition(":")
        if kind and track_id:
            return kind[:MAX_TEXT], track_id[:MAX_TEXT]
    return None


class EventTrack:
    """A track the page's events name, and the stats report tied to it."""

    __slots__ = ("direction", "id", "kind", "start", "stats_id")

    def __init__(self, kind: str, track_id: str, start: float, direction: str) -> None:
        self.kind = kind
        self.id = track_id
        self.start = start
        self.direction = direction  # inbound | outbound
        self.stats_id: str | None = None


class EventTracks:
    """The tracks a connection's events name, tied to stats as the peer ties them: at
    each result, every ``inbound-rtp``/``outbound-rtp`` report, in the result's order,
    goes to the first track already tied to its id, else to the first untied track
    whose id is its ``trackIdentifier`` (inbound) or its media source's (outbound)."""

    __slots__ = ("by_stats_id", "tracks", "untied")

    def __init__(self) -> None:
        self.tracks: list[EventTrack] = []
        self.by_stats_id: dict[str, EventTrack] = {}
        self.untied = 0

    def event(self, method: str, value: Any, t: float) -> None:
        """Read ``addTrack``, ``ontrack``, ``addTransceiver``, ``replaceTrack``."""
        if method == "addTrack":
            self._add(parse_track(value), t, "outbound", False)
        elif method == "ontrack":
            self._add(parse_track(value), t, "inbound", True)
        elif method == "addTransceiver":
            first = value[0] if type(value) is list and value else None
            if type(first) is not str:  # a kind alone names no track
                self._add(parse_track(first), t, "outbound", False)
        elif method == "replaceTrack" and type(value) is list and len(value) > 1:
            new = parse_track(value[1])
            if new is not None and not self._known(new[1]):
                self._add(new, t, "outbound", False)
        elif method in ("transceiverAdded", "transceiverModified") and type(value) is dict:
            self._transceiver(method, value, t)

    def _transceiver(self, method: str, value: dict[str, Any], t: float) -> None:
        """chrome://webrtc-internals' own events, in exports without ``ontrack``."""
        kind = value.get("kind")
        sender, receiver = value.get("sender"), value.get("receiver")
        sent = sender.get("track") if type(sender) is dict else None
        received = receiver.get("track") if type(receiver) is dict else None
        if type(kind) is not str:
            return
        if method == "transceiverAdded":
            reason = value.get("reason")
            if reason in ("addTrack", "addTransceiver") and type(sent) is str:
                self._add((kind, sent), t, "outbound", False)
            elif reason == "setRemoteDescription" and type(received) is str:
                if not self._known(received):
                    self._add((kind, received), t, "inbound", False)
            return
        direction = value.get("currentDirection")
        if type(direction) is str and "recv" in direction and type(received) is str:
            if truthy(received) and not self._known(received):
                self._add((kind, received), t, "inbound", False)

    def _known(self, track_id: str) -> bool:
        return any(track.id == track_id for track in self.tracks)

    def _add(self, parsed: tuple[str, str] | None, t: float, direction: str, once: bool) -> None:
        if parsed is None or len(self.tracks) >= MAX_EVENT_TRACKS:
            return
        kind, track_id = parsed
        if once and any(tr.direction == direction and tr.id == track_id for tr in self.tracks):
            return
        self.tracks.append(EventTrack(kind, track_id, t, direction))
        self.untied += 1

    def tie(self, samples: list[TrackSample], reports: Result) -> None:
        """Tie this result's reports to tracks (nothing to do once every track is)."""
        if not self.untied:
            return
        for sample in samples:
            report = sample.report
            kind = report.get("type")
            if kind == "inbound-rtp":
                identifier = report.get("trackIdentifier")
            elif kind == "outbound-rtp":
                source = linked_report(reports, report, "mediaSourceId")
                identifier = source.get("trackIdentifier") if source is not None else None
            else:
                continue
            stats_id = sample.track.stats_id
            for track in self.tracks:
                if track.stats_id is not None:
                    if track.stats_id == stats_id:
                        break
                elif identifier is not None and track.id == identifier:
                    track.stats_id = stats_id
                    self.by_stats_id.setdefault(stats_id, track)
                    self.untied -= 1
                    break

    def named(self, track_id: str | None) -> EventTrack | None:
        """The first track the events name ``track_id``."""
        if track_id is None:
            return None
        return next((track for track in self.tracks if track.id == track_id), None)


class TrackFeatures:
    """One row: the streaming state of one track's features."""

    __slots__ = (
        "codec",
        "event",
        "expected",
        "first_t",
        "flush_times",
        "flushes",
        "flushes_seen",
        "fps_samples",
        "fps_sum",
        "heights",
        "jitter_ms",
        "jitter_samples",
        "last",
        "last_reports",
        "last_t",
        "lost",
        "null_decoder",
        "pairs",
        "rtt_ms",
        "rtt_samples",
        "track",
        "widths",
    )

    def __init__(self, track: Track, t: float) -> None:
        self.track = track
        self.event: EventTrack | None = None
        self.first_t = t
        self.last_t = t
        self.last: Report = {}
        self.last_reports: Result = {}
        self.codec: tuple[str | None, str | None] | None = None
        self.widths: dict[Any, int] = {}
        self.heights: dict[Any, int] = {}
        self.pairs: dict[tuple[Any, Any], int] = {}
        self.null_decoder = False
        self.flushes: Any = None
        self.flushes_seen = False
        self.flush_times: list[float] = []
        # the interpreter's counts, for the scores
        self.expected = 0.0
        self.lost = 0.0
        self.rtt_ms = 0.0
        self.rtt_samples = 0
        self.jitter_ms = 0.0
        self.jitter_samples = 0
        self.fps_sum = 0.0
        self.fps_samples = 0

    # -- each result ----------------------------------------------------------------

    def add(self, sample: TrackSample, reports: Result, t: float) -> None:
        report = sample.report
        track = self.track
        self.last = report
        self.last_reports = reports
        self.last_t = t
        if self.codec is None:
            self._codec(report, reports)
        video = track.kind == "video"
        inbound = track.direction == "recv"
        if video:
            self._resolution(report)
            if inbound and not self.null_decoder:
                self.null_decoder = report.get("decoderImplementation") == "NullVideoDecoder"
        elif inbound and "jitterBufferFlushes" in report:
            self._flushes(report["jitterBufferFlushes"], t)
        packets, lost = sample.packets, sample.packets_lost
        if packets is not None:
            self.expected += packets + (lost or 0) if inbound else packets
            self.lost += lost or 0
        if sample.rtt_ms is not None:
            self.rtt_ms += sample.rtt_ms
            self.rtt_samples += 1
        if sample.jitter_ms is not None:
            self.jitter_ms += sample.jitter_ms
            self.jitter_samples += 1
        if sample.fps is not None:
            self.fps_sum += sample.fps
            self.fps_samples += 1

    def _codec(self, report: Report, reports: Result) -> None:
        if truthy(report.get("codecId")):
            codec = linked_report(reports, report, "codecId")
            if codec is not None:
                fmtp = codec.get("sdpFmtpLine")
                self.codec = (text(codec.get("mimeType")), text(fmtp) if truthy(fmtp) else "")
        elif self.track.legacy and self.track.codec is not None:
            self.codec = (self.track.codec, "")

    def _resolution(self, report: Report) -> None:
        width, height = self._size(report, "frameWidth"), self._size(report, "frameHeight")
        if not (truthy(width) and truthy(height)):
            return
        widths, heights = self.widths, self.heights
        if width in widths or len(widths) < MAX_SIZES:
            widths[width] = widths.get(width, 0) + 1
        if height in heights or len(heights) < MAX_SIZES:
            heights[height] = heights.get(height, 0) + 1
        pair = (width, height)
        if pair in self.pairs or len(self.pairs) < MAX_SIZES:
            self.pairs[pair] = self.pairs.get(pair, 0) + 1

    def _size(self, report: Report, name: str) -> int | float | None:
        """A frame width or height: a number (legacy stats: a number string, under
        its goog name); anything else is not a size."""
        value = report.get(name)
        if value is None and self.track.legacy:
            value = report.get(_LEGACY_NAMES[name][self.track.direction == "recv"])
        if type(value) is str:
            value = number(value)
            return int(value) if value is not None and value.is_integer() else value
        return value if is_number(value) else None

    def _flushes(self, flushes: Any, t: float) -> None:
        """Times at which ``jitterBufferFlushes`` grew (the first value is a base)."""
        self.flushes_seen = True
        if self.flushes is not None and is_number(flushes) and is_number(self.flushes):
            if flushes > self.flushes and len(self.flush_times) < 10_000:
                self.flush_times.append(t)
        self.flushes = flushes

    # -- the row --------------------------------------------------------------------

    def result(self, stun_rtt_s: float | None) -> dict[str, Any]:
        track = self.track
        event = self.event
        direction = DIRECTIONS[track.direction]
        inbound = direction == "inbound"
        start = event.start if event is not None else self.first_t
        out: dict[str, Any] = {"stats_id": text(track.stats_id)}
        if self.codec is not None:
            out["codec_mime_type"], out["codec_sdp_fmtp_line"] = self.codec
        out["direction"] = direction
        if track.kind == "video" and inbound:
            out["has_null_video_decoder"] = self.null_decoder
        out["kind"] = track.kind
        out["start_time"] = start
        identifier = event.id if event is not None else track.track_identifier
        if identifier is not None:
            out["track_identifier"] = text(identifier)
        if track.kind == "video":
            out.update(self._sizes())
        periodic = self._periodic_flushes()
        if periodic is not None:
            out["has_periodic_jitter_buffer_flushes"] = periodic
        out["duration"] = math.floor(self.last_t - start)
        out.update(self._last_stats(inbound))
        return present(out) | self._scores(out, stun_rtt_s)

    def _sizes(self) -> dict[str, Any]:
        if not self.widths or not self.heights:
            return {}
        common_pair = max(self.pairs.items(), key=lambda item: item[1])[0]
        return {
            "common_height": _mode(self.heights),
            "common_width": _mode(self.widths),
            "max_height": _whole(max(self.heights, key=_order)),
            "max_width": _whole(max(self.widths, key=_order)),
            "min_height": _whole(min(self.heights, key=_order)),
            "min_width": _whole(min(self.widths, key=_order)),
            "common_resolution": f"{_whole(common_pair[0])}x{_whole(common_pair[1])}",
        }

    def _periodic_flushes(self) -> bool | None:
        if not self.flushes_seen or len(self.flush_times) < 3:
            return None
        times = self.flush_times
        return all(
            _FLUSH_PERIOD_MIN_MS <= b - a <= _FLUSH_PERIOD_MAX_MS
            for a, b in itertools.pairwise(times)
        )

    def _last_stats(self, inbound: bool) -> dict[str, Any]:
        last = self.last
        legacy = self.track.legacy
        out: dict[str, Any] = {
            "frame_count": pluck(last, "framesEncoded", "framesDecoded"),
            "key_frame_count": pluck(last, "keyFramesEncoded", "keyFramesDecoded"),
            "qp_sum": pluck(last, "qpSum"),
            "nack_count": self._counter(last, "nackCount", legacy),
            "pli_count": self._counter(last, "pliCount", legacy),
            "fir_count": self._counter(last, "firCount", legacy),
        }
        return out | (self._inbound(last) if inbound else self._outbound(last))

    def _counter(self, report: Report, name: str, legacy: bool) -> Any:
        value = pluck(report, name)
        if value is None and legacy:
            raw = number(report.get(_LEGACY_NAMES[name][self.track.direction == "recv"]))
            value = _whole(raw) if raw is not None else None
        return value

    def _outbound(self, last: Report) -> dict[str, Any]:
        out: dict[str, Any] = {}
        durations = pluck(last, "qualityLimitationDurations")
        if truthy(durations) and type(durations) is dict:
            values = list(durations.values())
            if all(is_number(v) for v in values):
                total = float(sum(values))
                for reason in ("bandwidth", "cpu", "other"):
                    share = durations.get(reason)
                    if is_number(share) and total:
                        out[f"{reason}_quality_limitation_percentage"] = share / total
        out["quality_limitation_resolution_changes"] = pluck(
            last, "qualityLimitationResolutionChanges"
        )
        out["average_encode_time"] = divide(last, "totalEncodeTime", "framesEncoded")
        out["rid"] = text(pluck(last, "rid"))
        out["encoding_index"] = pluck(last, "encodingIndex")
        measured = pluck(last, "psnrMeasurements")
        if truthy(measured):
            out["psnr_measurements"] = measured
            sums = pluck(last, "psnrSum")
            if type(sums) is dict:
                for plane in ("y", "u", "v"):
                    out[f"psnr_sum_{plane}"] = sums.get(plane)
        out["encoder_implementation"] = text(
            pluck(last, "encoderImplementation") or last.get("codecImplementationName")
        )
        out["power_efficient_encoder"] = pluck(last, "powerEfficientEncoder")
        out["packets_sent_with_ect1"] = pluck(last, "packetsSentWithEct1")
        remote = linked_report(self.last_reports, last, "remoteId")
        if remote is not None:
            out["packets_received_with_ect1"] = pluck(remote, "packetsReceivedWithEct1")
            out["packets_received_with_ce"] = pluck(remote, "packetsReceivedWithCe")
            out["packets_with_bleached_ect1_marking"] = pluck(
                remote, "packetsWithBleachedEct1Marking"
            )
        return out

    def _inbound(self, last: Report) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: pluck(last, peer)
            for name, peer in (
                ("freeze_count", "freezeCount"),
                ("total_freezes_duration", "totalFreezesDuration"),
                ("frames_dropped", "framesDropped"),
                ("power_efficient_decoder", "powerEfficientDecoder"),
                ("jitter_buffer_delay", "jitterBufferDelay"),
                ("jitter_buffer_minimum_delay", "jitterBufferMinimumDelay"),
                ("jitter_buffer_target_delay", "jitterBufferTargetDelay"),
                ("jitter_buffer_emitted_count", "jitterBufferEmittedCount"),
                ("jitter_buffer_flushes", "jitterBufferFlushes"),
                ("total_processing_delay", "totalProcessingDelay"),
                ("frames_assembled_from_multiple_packets", "framesAssembledFromMultiplePackets"),
                ("total_assembly_time", "totalAssemblyTime"),
                ("concealed_samples", "concealedSamples"),
                ("total_samples_received", "totalSamplesReceived"),
                ("inserted_samples_for_deceleration", "insertedSamplesForDeceleration"),
                ("removed_samples_for_acceleration", "removedSamplesForAcceleration"),
            )
        }
        out["decoder_implementation"] = text(
            pluck(last, "decoderImplementation") or last.get("codecImplementationName")
        )
        for name, top, bottom in (
            ("concealment_percentage", "concealedSamples", "totalSamplesReceived"),
            ("deceleration_percentage", "insertedSamplesForDeceleration", "totalSamplesReceived"),
            ("acceleration_percentage", "removedSamplesForAcceleration", "totalSamplesReceived"),
            ("average_decode_time", "totalDecodeTime", "framesDecoded"),
            ("average_inter_frame_delay", "totalInterFrameDelay", "framesDecoded"),
            ("average_jitter_buffer_delay", "jitterBufferDelay", "jitterBufferEmittedCount"),
            ("average_processing_delay", "totalProcessingDelay", "jitterBufferEmittedCount"),
            ("average_assembly_time", "totalAssemblyTime", "framesAssembledFromMultiplePackets"),
        ):
            out[name] = divide(last, top, bottom)
        return out

    # -- scores ---------------------------------------------------------------------

    def _scores(self, row: dict[str, Any], stun_rtt_s: float | None) -> dict[str, Any]:
        """``r_factor``/``estimated_mos`` or ``video_score`` from this row's features
        and the interpreter's counts (docs/features.md, Scores, says which)."""
        if self.track.kind == "audio":
            if self.expected <= 0:
                return {}
            if stun_rtt_s is not None:
                rtt_ms = stun_rtt_s * 1000
            else:
                rtt_ms = self.rtt_ms / self.rtt_samples if self.rtt_samples else 0.0
            buffer_s = row.get("average_jitter_buffer_delay")
            if is_number(buffer_s):
                buffer_ms = float(buffer_s) * 1000
            else:
                jitter = self.jitter_ms / self.jitter_samples if self.jitter_samples else 0.0
                buffer_ms = 2 * jitter
            audio = audio_score(
                rtt_ms=rtt_ms,
                jitter_buffer_ms=buffer_ms,
                loss_fraction=min(max(self.lost / self.expected, 0.0), 1.0),
                mime_type=row.get("codec_mime_type"),
            )
            return {"r_factor": round(audio.r_factor, 2), "estimated_mos": round(audio.mos, 3)}
        resolution = row.get("common_resolution")
        duration_s = row["duration"] / 1000
        frames = row.get("frame_count")
        if is_number(frames) and duration_s > 0:
            fps = frames / duration_s
        elif self.fps_samples:
            fps = self.fps_sum / self.fps_samples
        else:
            return {}
        if resolution is None:
            return {}
        width, _, height = resolution.partition("x")
        frozen = row.get("total_freezes_duration")
        limited = sum(
            share
            for name in ("bandwidth", "cpu")
            if is_number(share := row.get(f"{name}_quality_limitation_percentage"))
        )
        score = video_score(
            width=float(width),
            height=float(height),
            frames_per_second=fps,
            frozen_s=float(frozen) if is_number(frozen) else 0.0,
            duration_s=duration_s,
            limited_fraction=limited,
        )
        return {"video_score": round(score, 3)}


def _order(size: Any) -> float:
    """Sizes in numeric order (non-numbers last)."""
    return float(size) if is_number(size) else math.inf


def _whole(value: Any) -> Any:
    """``parseInt`` of a size: its integer part."""
    return math.trunc(value) if is_number(value) and math.isfinite(value) else value


def _mode(counts: dict[Any, int]) -> Any:
    """The most frequent size, the smallest among equals (the peer reads its counts
    from an object, whose integer keys JavaScript lists in ascending order)."""
    best = max(counts.values())
    return _whole(min((size for size, n in counts.items() if n == best), key=_order))
