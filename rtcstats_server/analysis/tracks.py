"""What one track's samples hold: the per-track rules of the stats interpreter.

``TrackReader`` keeps one track's last cumulative counters and turns each report of
it (standard, pre-standard or legacy ``ssrc``) into a ``TrackSample``. The rules:

**Counters** (packets, bytes, lost, frames, samples, freezes) are cumulative; a sample
holds what happened since the previous sample of the same track. The first sample
holds the counts since the stream began. A stream whose packet counter (bytes when
there is none) went down was re-created: its counters restarted, the sample holds the
new values, and no rate is computed for it; a rate (bitrate, counted fps) also needs
its counter read at both ends of the interval. Another counter that goes down gives no
value for that interval, except packets lost, which receivers correct downwards
(duplicates, late packets): its sample is negative, so the sums stay exact.

**Packet loss** of an interval: received = ``packetsLost / (packetsReceived +
packetsLost)`` of the inbound report's counters; sent = the far end's ``packetsLost``
(remote-inbound, or the legacy send report) ``/ packetsSent``. When the far end gives
only ``fractionLost`` (the loss of its last RTCP interval), that fraction is the
interval's loss and ``fractionLost * packets sent`` its estimated lost count. A
cumulative ``packetsLost`` below zero counts as zero. Percentages are cut to 0..100;
totals over a call are the ratio of the summed counts, never a mean of percentages.

**Round-trip time** is a sample only when it is a new measurement (reports repeat the
last value until the next RTCP report or STUN response; see ``reports.measurement``):
sent tracks from the remote-inbound ``roundTripTime`` (legacy: the send report's
``googRtt``), received tracks from the remote-outbound one, the transport from the
selected pair's ``currentRoundTripTime``. Not from a legacy pair's ``googRtt``: that
is libjingle's smoothed estimate, seeded at 3 s and decaying over the first seconds,
not a measurement. Jitter, every sample: received tracks from their own report, sent
tracks from the far end's (legacy: ``googJitterReceived`` of either). Seconds become
milliseconds; legacy values are milliseconds already.

**Other values**: bitrate from bytes over the interval; fps as reported, else frames
(decoded, encoded) over the interval; frame height, audio level (0..1; legacy /32767;
sent audio from the outbound report's media source), audio concealment from
``concealedSamples / totalSamplesReceived``; freezes and dropped frames as counted.
A standard report missing one of these is completed from its deprecated ``track``
report (``trackId``), as older Chrome and Safari keep them there. Negative values
(legacy "-1": not measured) are not values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from rtcstats_server.analysis.reports import LEGACY_LEVEL_SCALE, Report, Result, measurement, number
from rtcstats_server.analysis.samples import Track, TrackSample

#: Counters besides packets, bytes and frames: concealed audio samples, audio samples
#: received, freezes, freeze seconds, dropped frames.
_Counts = tuple[float | None, float | None, float | None, float | None, float | None]
_NO_COUNTS: Final[_Counts] = (None, None, None, None, None)


def positive(value: float | None) -> float | None:
    """A measurement, or None for the "-1: not measured" of legacy stats."""
    return value if value is not None and value >= 0 else None


def _delta(now: float | None, before: float | None, reset: bool) -> float | None:
    if now is None:
        return None
    if before is None or reset:
        return now
    return now - before if now >= before else None


def _percent(part: float, whole: float) -> float:
    return min(max(100 * part / whole, 0.0), 100.0)


def text(value: object) -> str | None:
    """A string the client gave (cut by whoever stores it); anything else None."""
    return value if type(value) is str else None


def _completed(get: Callable[[str], object], linked: Report) -> Callable[[str], object]:
    """A report's ``get`` that falls back to its deprecated track report."""

    def field(name: str) -> object:
        value = get(name)
        return linked.get(name) if value is None else value

    return field


def _measured(value: object) -> float | None:
    """``positive(number(value))`` in one call: a measurement, or None."""
    found = number(value)
    return found if found is not None and found >= 0 else None


def _level(level: float | None) -> float | None:
    """An audio level on the standard 0..1 scale. Some clients (the jitsi dumps of
    2020, e.g. google-standard-stats-sfu) put the legacy 0..32767 integer in the
    standard ``audioLevel``; anything above 1 is that scale."""
    return level / LEGACY_LEVEL_SCALE if level is not None and level > 1 else level


def linked_report(reports: Result, report: Report, name: str) -> Report | None:
    """The report another report names in its field ``name`` (ids are client data)."""
    target = report.get(name)
    if type(target) is not str:
        return None
    found = reports.get(target)
    return found if type(found) is dict else None


class TrackReader:
    """One track and the last cumulative counters read for it."""

    __slots__ = (
        "at",
        "bytes",
        "codec_id",
        "counts",
        "frames",
        "lost",
        "mark",
        "packets",
        "track",
    )

    def __init__(self, track: Track) -> None:
        self.track = track
        self.at: float | None = None
        self.packets: float | None = None
        self.bytes: float | None = None
        self.lost: float | None = None
        self.frames: float | None = None
        self.counts: _Counts = _NO_COUNTS
        #: The far end's last round-trip measurement marker (``reports.measurement``).
        self.mark: object = None
        self.codec_id: object = None

    def standard(
        self, t: float, report: Report, remote: Report | None, reports: Result
    ) -> TrackSample:
        track = self.track
        get = report.get
        # The deprecated track report (older Chrome, Safari): None in current browsers,
        # whose reports are then read with the C ``dict.get`` alone.
        track_id = get("trackId")
        linked = reports.get(track_id) if type(track_id) is str else None
        if type(linked) is not dict:
            linked = None
        field = get if linked is None else _completed(get, linked)
        if (
            get("codecId") != self.codec_id
            or track.track_identifier is None
            or track.mid is None
            or track.codec is None
        ):
            self._identify(report, linked, reports)
        video = track.kind == "video"
        jitter = rtt = fraction = lost = level = height = fps = None
        counts = _NO_COUNTS
        if video:
            fps = _measured(field("framesPerSecond"))
            height = _measured(field("frameHeight"))
        if track.direction == "recv":
            packets, count = number(get("packetsReceived")), number(get("bytesReceived"))
            lost = number(get("packetsLost"))
            jitter = _measured(get("jitter"))
            if jitter is not None:
                jitter *= 1000
            if video:
                frames = number(field("framesDecoded"))
                counts = (
                    None,
                    None,
                    number(field("freezeCount")),
                    number(field("totalFreezesDuration")),
                    number(field("framesDropped")),
                )
            else:
                frames = None
                level = _level(_measured(field("audioLevel")))
                counts = (
                    number(field("concealedSamples")),
                    number(field("totalSamplesReceived")),
                    None,
                    None,
                    None,
                )
        else:
            packets, count = number(get("packetsSent")), number(get("bytesSent"))
            frames = number(get("framesEncoded")) if video else None
            if not video:
                source = linked_report(reports, report, "mediaSourceId")
                raw = source.get("audioLevel") if source is not None else None
                level = _level(_measured(raw if raw is not None else field("audioLevel")))
            if remote is not None:
                lost = number(remote.get("packetsLost"))
                if lost is None:
                    fraction = _measured(remote.get("fractionLost"))
                jitter = _measured(remote.get("jitter"))
                if jitter is not None:
                    jitter *= 1000
        if remote is not None:
            mark = measurement(remote)
            if mark is None or mark != self.mark:
                rtt = _measured(remote.get("roundTripTime"))
                if rtt is not None:
                    rtt *= 1000
                else:  # Firefox before 57: mozRtt, in milliseconds
                    rtt = _measured(remote.get("mozRtt"))
            self.mark = mark
        return self._sample(
            t,
            report,
            remote,
            packets,
            count,
            lost,
            fraction,
            frames,
            fps,
            height,
            level,
            jitter,
            rtt,
            counts,
        )

    def legacy(self, t: float, report: Report) -> TrackSample:
        """A goog ``ssrc`` report: numbers as strings, times in ms, levels 0..32767."""
        track = self.track
        get = report.get
        send = track.direction == "send"
        if track.track_identifier is None:
            track.track_identifier = text(get("googTrackId"))
        raw_level = number(get("audioInputLevel" if send else "audioOutputLevel"))
        level = raw_level / LEGACY_LEVEL_SCALE if raw_level is not None and raw_level >= 0 else None
        rtt = jitter = None
        if send:
            mark = measurement(report)
            if mark is None or mark != self.mark:
                rtt = positive(number(get("googRtt")))
            self.mark = mark
        jitter = positive(number(get("googJitterReceived")))
        return self._sample(
            t,
            report,
            report if send else None,
            number(get("packetsSent" if send else "packetsReceived")),
            number(get("bytesSent" if send else "bytesReceived")),
            number(get("packetsLost")),
            None,
            None,
            positive(number(get("googFrameRateSent" if send else "googFrameRateReceived"))),
            positive(number(get("googFrameHeightSent" if send else "googFrameHeightReceived"))),
            level,
            jitter,
            rtt,
            _NO_COUNTS,
        )

    def _counted(self, counts: _Counts, reset: bool) -> _Counts:
        """The deltas of the other counters (concealed and received audio samples,
        freezes, freeze seconds, dropped frames); they follow the stream's restarts."""
        if counts is _NO_COUNTS:
            return counts
        a, b, c, d, e = counts
        last_a, last_b, last_c, last_d, last_e = self.counts
        self.counts = (
            last_a if a is None else a,
            last_b if b is None else b,
            last_c if c is None else c,
            last_d if d is None else d,
            last_e if e is None else e,
        )
        return (
            _delta(a, last_a, reset),
            _delta(b, last_b, reset),
            _delta(c, last_c, reset),
            _delta(d, last_d, reset),
            _delta(e, last_e, reset),
        )

    def _identify(self, report: Report, linked: Report | None, reports: Result) -> None:
        """Fill in what a client may report late, and follow codec changes."""
        track = self.track
        codec_id = report.get("codecId")
        if codec_id != self.codec_id or (track.codec is None and codec_id is not None):
            self.codec_id = codec_id
            codec = linked_report(reports, report, "codecId")
            track.codec = text(codec.get("mimeType")) if codec is not None else None
        if track.track_identifier is None:
            identifier = report.get("trackIdentifier")
            if identifier is None and linked is not None:
                identifier = linked.get("trackIdentifier")
            if identifier is None and track.direction == "send":
                source = linked_report(reports, report, "mediaSourceId")
                identifier = source.get("trackIdentifier") if source is not None else None
            track.track_identifier = text(identifier)
        if track.mid is None:
            track.mid = text(report.get("mid"))

    def _sample(
        self,
        t: float,
        report: Report,
        remote: Report | None,
        packets: float | None,
        count: float | None,
        lost: float | None,
        fraction: float | None,
        frames: float | None,
        fps: float | None,
        height: float | None,
        level: float | None,
        jitter: float | None,
        rtt: float | None,
        counts: _Counts,
    ) -> TrackSample:
        """The interval's values from this report's cumulative counters and the last."""
        at = number(report.get("timestamp")) or t
        # The stream's own counter: packets, else bytes. Counted since the previous
        # sample only if it was there before and did not go down (a restart).
        primary, before = (packets, self.packets) if packets is not None else (count, self.bytes)
        reset = primary is not None and before is not None and primary < before
        interval: float | None = None
        if self.at is not None and not reset and (primary is None or before is not None):
            seconds = (at - self.at) / 1000
            interval = seconds if seconds > 0 else None
        self.at = at
        # Rates only over a counter read at both ends of the interval.
        bytes_over = interval if self.bytes is not None else None
        frames_over = interval if self.frames is not None else None
        packets_d = _delta(packets, self.packets, reset)
        bytes_d = _delta(count, self.bytes, reset)
        frames_d = _delta(frames, self.frames, reset)
        lost_d: float | None = None
        if lost is not None:
            lost = max(lost, 0.0)  # a float, as typed (0 would be an int in JSON)
            lost_d = lost if self.lost is None or reset else lost - self.lost
            self.lost = lost
        if packets is not None:
            self.packets = packets
        if count is not None:
            self.bytes = count
        if frames is not None:
            self.frames = frames
        direction = self.track.direction
        loss: float | None = None
        if fraction is not None:
            loss = min(fraction * 100, 100.0)
            lost_d = fraction * packets_d if packets_d is not None else None
        elif lost_d is not None and packets_d is not None:
            whole = packets_d + lost_d if direction == "recv" else packets_d
            loss = _percent(lost_d, whole) if whole > 0 else None
        concealed_d, total_d, freezes_d, freeze_s_d, dropped_d = self._counted(counts, reset)
        if fps is None and frames_d is not None and frames_over is not None:
            fps = frames_d / frames_over
        return TrackSample(
            self.track,
            t,
            interval,
            reset,
            report,
            remote,
            packets_d,
            lost_d,
            bytes_d,
            bytes_d * 8 / 1000 / bytes_over if bytes_d is not None and bytes_over else None,
            loss,
            rtt,
            jitter,
            fps,
            height,
            level,
            _percent(concealed_d or 0, total_d) if total_d else None,
            concealed_d,
            total_d,
            freezes_d,
            freeze_s_d,
            dropped_d,
        )
