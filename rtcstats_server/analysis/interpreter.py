"""The one stats interpreter: getStats reports of any dialect in, tracks and samples out.

One streaming pass over the reader's events (``dumps.reader``: every getStats event
carries the connection's full reports). The summary, its findings, the viewer's
series and anything later (features, scores) are views of what this module derives,
so a value cannot be computed two ways. Consumers that need a field not derived here
read it from the raw report each sample carries, in the same pass.

The rules, each decided once:

**Tracks.** One per local RTP report of kind audio or video: ``inbound-rtp`` (recv),
``outbound-rtp`` (send), their pre-standard spellings, or a legacy ``ssrc`` report
(``_send``/``_recv``), keyed by stats id. Legacy ``ssrc`` reports are the browser's
own numbers, so when a result has them, pre-standard RTP reports in it (the shim's
copies, with milliseconds where seconds belong) are not read. Per connection at most
``MAX_TRACKS`` tracks; later ones are not read (``tracks_omitted``: the most that were
present at once beyond the cap).

**The far end's reports** belong to the track they describe: a ``remote-inbound-rtp``
(what the far end says about what we send) to the ``outbound-rtp`` its ``localId``
names, a ``remote-outbound-rtp`` to the ``inbound-rtp`` its ``localId`` names; without
a usable ``localId``, to the local report whose ``remoteId`` names it, else to the one
with the same ssrc. A legacy ``ssrc`` send report carries the far end's numbers itself.

**Counters** (packets, bytes, lost, frames, samples, freezes) are cumulative; a sample
holds what happened since the previous sample of the same track. The first sample
holds the counts since the stream began. A stream whose packet counter (bytes when
there is none) went down was re-created: its counters restarted, the sample holds the
new values, and no rate is computed for it. Another counter that goes down gives no
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

**The selected candidate pair**: the pair named by the first ``transport`` (or legacy
``googComponent``) whose ``selectedCandidatePairId`` is in the result; else the pair
that says it is selected (Firefox ``selected``, legacy ``googActiveConnection``).
Nothing else (``nominated`` pairs can be several).

**Other values**: bitrate from bytes over the interval; fps as reported, else frames
(decoded, encoded) over the interval; frame height, audio level (0..1; legacy /32767;
sent audio from the outbound report's media source), audio concealment from
``concealedSamples / totalSamplesReceived``; freezes and dropped frames as counted.
A standard report missing one of these is completed from its deprecated ``track``
report (``trackId``), as older Chrome and Safari keep them there. Negative values
(legacy "-1": not measured) are not values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final, Protocol

from rtcstats_server.analysis.reports import (
    LEGACY_LEVEL_SCALE,
    PRE_STANDARD_RTP,
    Report,
    candidate_type,
    is_active_pair,
    measurement,
    media_kind,
    number,
)
from rtcstats_server.analysis.samples import (
    SelectedPair,
    StatsRead,
    Track,
    TrackSample,
    TransportSample,
)
from rtcstats_server.dumps.events import STATS_METHOD, Event

#: Tracks followed per connection (an SFU's hundreds); later ones are not read.
MAX_TRACKS: Final = 256
#: Connections interpreted by default (a consumer asks for its own cap).
MAX_CONNECTIONS: Final = 100

#: What the interpreter does with a report, by its type (others are not read).
_RECV, _SEND, _REMOTE_INBOUND, _REMOTE_OUTBOUND, _TRANSPORT, _PAIR, _SSRC, _PRE = range(8)
_ROLES: Final[dict[str, int]] = {
    "inbound-rtp": _RECV,
    "outbound-rtp": _SEND,
    "remote-inbound-rtp": _REMOTE_INBOUND,
    "remote-outbound-rtp": _REMOTE_OUTBOUND,
    "transport": _TRANSPORT,
    "googComponent": _TRANSPORT,
    "candidate-pair": _PAIR,
    "candidatepair": _PAIR,
    "googCandidatePair": _PAIR,
    "ssrc": _SSRC,
    **dict.fromkeys(PRE_STANDARD_RTP, _PRE),
}


#: Counters besides packets, bytes and frames: concealed audio samples, audio samples
#: received, freezes, freeze seconds, dropped frames.
_Counts = tuple[float | None, float | None, float | None, float | None, float | None]
_NO_COUNTS: Final[_Counts] = (None, None, None, None, None)


def _positive(value: float | None) -> float | None:
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


def _text(value: object) -> str | None:
    return value if type(value) is str else None


def _is_active(report: object) -> bool:
    return type(report) is dict and is_active_pair(report)


def _field(get: Callable[[str], object], linked: Report | None, name: str) -> float | None:
    """A number from a report (its ``get``), else from its deprecated track report."""
    value = get(name)
    if value is None and linked is not None:
        value = linked.get(name)
    return number(value)


def _linked(reports: dict[str, Report], report: Report, name: str) -> Report | None:
    """The report another report names in its field ``name`` (ids are client data)."""
    target = report.get(name)
    if type(target) is not str:
        return None
    found = reports.get(target)
    return found if type(found) is dict else None


class _TrackState:
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
        self, t: float, report: Report, remote: Report | None, reports: dict[str, Report]
    ) -> TrackSample:
        track = self.track
        get = report.get
        linked = _linked(reports, report, "trackId")
        self._identify(report, linked, reports)
        video = track.kind == "video"
        jitter = rtt = fraction = lost = level = height = fps = None
        counts = _NO_COUNTS
        if video:
            fps = _positive(_field(get, linked, "framesPerSecond"))
            height = _positive(_field(get, linked, "frameHeight"))
        if track.direction == "recv":
            packets, count = number(get("packetsReceived")), number(get("bytesReceived"))
            lost = number(get("packetsLost"))
            jitter = _positive(number(get("jitter")))
            if jitter is not None:
                jitter *= 1000
            if video:
                frames = _field(get, linked, "framesDecoded")
                counts = (
                    None,
                    None,
                    _field(get, linked, "freezeCount"),
                    _field(get, linked, "totalFreezesDuration"),
                    _field(get, linked, "framesDropped"),
                )
            else:
                frames = None
                level = _positive(_field(get, linked, "audioLevel"))
                counts = (
                    _field(get, linked, "concealedSamples"),
                    _field(get, linked, "totalSamplesReceived"),
                    None,
                    None,
                    None,
                )
        else:
            packets, count = number(get("packetsSent")), number(get("bytesSent"))
            frames = number(get("framesEncoded")) if video else None
            if not video:
                source = _linked(reports, report, "mediaSourceId")
                raw = source.get("audioLevel") if source is not None else None
                level = _positive(
                    number(raw) if raw is not None else _field(get, linked, "audioLevel")
                )
            if remote is not None:
                lost = number(remote.get("packetsLost"))
                if lost is None:
                    fraction = _positive(number(remote.get("fractionLost")))
                jitter = _positive(number(remote.get("jitter")))
                if jitter is not None:
                    jitter *= 1000
        if remote is not None:
            mark = measurement(remote)
            if mark is None or mark != self.mark:
                rtt = _positive(number(remote.get("roundTripTime")))
                if rtt is not None:
                    rtt *= 1000
                else:  # Firefox before 57: mozRtt, in milliseconds
                    rtt = _positive(number(remote.get("mozRtt")))
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
            track.track_identifier = _text(get("googTrackId"))
        raw_level = number(get("audioInputLevel" if send else "audioOutputLevel"))
        level = raw_level / LEGACY_LEVEL_SCALE if raw_level is not None and raw_level >= 0 else None
        rtt = jitter = None
        if send:
            mark = measurement(report)
            if mark is None or mark != self.mark:
                rtt = _positive(number(get("googRtt")))
            self.mark = mark
        jitter = _positive(number(get("googJitterReceived")))
        return self._sample(
            t,
            report,
            report if send else None,
            number(get("packetsSent" if send else "packetsReceived")),
            number(get("bytesSent" if send else "bytesReceived")),
            number(get("packetsLost")),
            None,
            None,
            _positive(number(get("googFrameRateSent" if send else "googFrameRateReceived"))),
            _positive(number(get("googFrameHeightSent" if send else "googFrameHeightReceived"))),
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

    def _identify(self, report: Report, linked: Report | None, reports: dict[str, Report]) -> None:
        """Fill in what a client may report late, and follow codec changes."""
        track = self.track
        codec_id = report.get("codecId")
        if codec_id != self.codec_id or (track.codec is None and codec_id is not None):
            self.codec_id = codec_id
            codec = _linked(reports, report, "codecId")
            track.codec = _text(codec.get("mimeType")) if codec is not None else None
        if track.track_identifier is None:
            identifier = report.get("trackIdentifier")
            if identifier is None and linked is not None:
                identifier = linked.get("trackIdentifier")
            if identifier is None and track.direction == "send":
                source = _linked(reports, report, "mediaSourceId")
                identifier = source.get("trackIdentifier") if source is not None else None
            track.track_identifier = _text(identifier)
        if track.mid is None:
            track.mid = _text(report.get("mid"))

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
            lost = max(lost, 0)
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


class _Connection:
    """The interpreter's state of one peer connection."""

    __slots__ = (
        "pair",
        "pair_at",
        "pair_mark",
        "pair_received",
        "pair_sent",
        "pc_id",
        "plan",
        "refused",
        "tracks",
        "tracks_omitted",
    )

    def __init__(self, pc_id: str | None) -> None:
        self.pc_id = pc_id
        self.plan: _Plan | None = None
        self.tracks: dict[str, _TrackState] = {}
        self.tracks_omitted = 0
        self.refused = 0
        self.pair: SelectedPair | None = None
        self.pair_mark: object = None
        self.pair_at: float | None = None
        self.pair_sent: float | None = None
        self.pair_received: float | None = None

    def read(self, event: Event) -> StatsRead:
        reports = event.stats
        t = event.timestamp
        plan = self.plan
        if plan is None or reports.keys() != plan.ids:
            plan = self.plan = self._plan(reports)
        samples: list[TrackSample] = []
        for report_id, state, remote_id in plan.tracks:
            report = reports[report_id]
            if type(report) is not dict:
                continue
            if state.track.legacy:
                samples.append(state.legacy(t, report))
                continue
            remote = reports.get(remote_id) if remote_id is not None else None
            if type(remote) is not dict:
                remote = None
            samples.append(state.standard(t, report, remote, reports))
        transport = self._transport(t, reports, plan.transports, plan.pairs)
        return StatsRead(self.pc_id, t, reports, samples, transport, self.tracks_omitted)

    def _plan(self, reports: dict[str, Report]) -> _Plan:
        """What to read in results with these stats ids: classifying the reports and
        pairing the far end's with ours is done once per set of ids, as a stats id
        keeps its type and its links in every browser."""
        local: list[tuple[str, Report, str]] = []
        legacy: list[tuple[str, Report, str]] = []
        pre_standard: list[tuple[str, Report, str]] = []
        remote: list[tuple[str, Report, str]] = []
        transports: list[str] = []
        pairs: list[str] = []
        roles = _ROLES
        for report_id, report in reports.items():
            if type(report) is not dict:
                continue
            kind = report.get("type")
            if type(kind) is not str:
                continue
            role = roles.get(kind)
            if role is None:
                continue
            if role == _RECV:
                local.append((report_id, report, "recv"))
            elif role == _SEND:
                local.append((report_id, report, "send"))
            elif role == _PAIR:
                pairs.append(report_id)
            elif role == _TRANSPORT:
                transports.append(report_id)
            elif role == _REMOTE_INBOUND:
                remote.append((report_id, report, "send"))
            elif role == _REMOTE_OUTBOUND:
                remote.append((report_id, report, "recv"))
            elif role == _SSRC:
                sending = report_id.endswith("_send") or (
                    not report_id.endswith("_recv") and "packetsSent" in report
                )
                legacy.append((report_id, report, "send" if sending else "recv"))
            else:
                pre_standard.append((report_id, report, kind))
        if pre_standard and not legacy:
            for report_id, report, kind in pre_standard:
                direction = PRE_STANDARD_RTP[kind]
                if report.get("isRemote") is True:  # the far end's: about our other side
                    remote.append((report_id, report, "send" if direction == "recv" else "recv"))
                else:
                    local.append((report_id, report, direction))
        remote_of = _attribute(local, remote) if remote else {}
        self.refused = 0
        tracks: list[tuple[str, _TrackState, str | None]] = []
        for report_id, report, direction in local:
            state = self._track(report_id, report, direction, reports, False)
            if state is not None:
                tracks.append((report_id, state, remote_of.get(report_id)))
        for report_id, report, direction in legacy:
            state = self._track(report_id, report, direction, reports, True)
            if state is not None:
                tracks.append((report_id, state, None))
        self.tracks_omitted = max(self.tracks_omitted, self.refused)
        return _Plan(set(reports), tracks, transports, pairs)

    def _track(
        self,
        report_id: str,
        report: Report,
        direction: str,
        reports: dict[str, Report],
        legacy: bool,
    ) -> _TrackState | None:
        state = self.tracks.get(report_id)
        if state is not None:
            return state
        kind = media_kind(report, reports)
        if kind is None:
            return None
        if len(self.tracks) >= MAX_TRACKS:
            self.refused += 1
            return None
        ssrc = report.get("ssrc")
        codec = None
        if legacy:
            name = report.get("googCodecName")
            codec = f"{kind}/{name}" if type(name) is str else None
        track = Track(
            self.pc_id,
            report_id,
            kind,
            direction,
            ssrc if type(ssrc) is int or type(ssrc) is str else None,
            _text(report.get("rid")),
            None,
            None,
            codec,
            legacy,
        )
        state = self.tracks[report_id] = _TrackState(track)
        return state

    def _transport(
        self,
        t: float,
        reports: dict[str, Report],
        transports: list[str],
        pairs: list[str],
    ) -> TransportSample | None:
        chosen: Report | None = None
        pair_id: str | None = None
        for transport_id in transports:
            transport = reports[transport_id]
            if type(transport) is not dict:
                continue
            named = transport.get("selectedCandidatePairId")
            if type(named) is str and type(reports.get(named)) is dict:
                chosen, pair_id = transport, named
                break
        if pair_id is None:
            pair_id = next((p for p in pairs if _is_active(reports[p])), None)
            if chosen is None and transports:
                first = reports[transports[0]]
                chosen = first if type(first) is dict else None
        if chosen is None and pair_id is None:
            return None
        dtls = _text(chosen.get("dtlsState")) if chosen is not None else None
        if pair_id is None:
            return TransportSample(
                self.pc_id, t, self.pair, False, False, chosen, dtls, None, None, None, None
            )
        pair = reports[pair_id]
        previous = self.pair
        new_pair = previous is None or previous.id != pair_id
        if new_pair:
            self.pair = _selected(pair_id, pair, reports)
            self.pair_mark = self.pair_at = self.pair_sent = self.pair_received = None
        rtt: float | None = None
        mark = measurement(pair)
        if mark is None or mark != self.pair_mark or new_pair:
            seconds = _positive(number(pair.get("currentRoundTripTime")))
            rtt = seconds * 1000 if seconds is not None else None
        self.pair_mark = mark
        at = number(pair.get("timestamp")) or t
        sent, received = number(pair.get("bytesSent")), number(pair.get("bytesReceived"))
        interval = sent_kbps = received_kbps = None
        if self.pair_at is not None and at > self.pair_at:
            interval = (at - self.pair_at) / 1000
            before = self.pair_sent
            if sent is not None and before is not None and sent >= before:
                sent_kbps = (sent - before) * 8 / 1000 / interval
            before = self.pair_received
            if received is not None and before is not None and received >= before:
                received_kbps = (received - before) * 8 / 1000 / interval
        self.pair_at = at
        if sent is not None:
            self.pair_sent = sent
        if received is not None:
            self.pair_received = received
        return TransportSample(
            self.pc_id,
            t,
            self.pair,
            new_pair,
            new_pair and previous is not None,
            chosen,
            dtls,
            rtt,
            interval,
            sent_kbps,
            received_kbps,
        )


class _Plan:
    """Which reports of a result with these ids to read, and as what."""

    __slots__ = ("ids", "pairs", "tracks", "transports")

    def __init__(
        self,
        ids: set[str],
        tracks: list[tuple[str, _TrackState, str | None]],
        transports: list[str],
        pairs: list[str],
    ) -> None:
        self.ids = ids
        #: (local report id, its track, the far end's report id about it)
        self.tracks = tracks
        self.transports = transports
        self.pairs = pairs


def _attribute(
    local: list[tuple[str, Report, str]], remote: list[tuple[str, Report, str]]
) -> dict[str, str]:
    """Local report id → the id of the far end's report about the same stream."""
    direction_of = {report_id: direction for report_id, _, direction in local}
    found: dict[str, str] = {}
    unmatched: list[tuple[str, Report, str]] = []
    for report_id, report, direction in remote:
        named = report.get("localId")
        if named is None and report.get("isRemote") is True:
            named = report.get("remoteId")  # pre-standard: the pair name each other
        if type(named) is str and direction_of.get(named) == direction:
            found[named] = report_id
        else:
            unmatched.append((report_id, report, direction))
    if unmatched:
        by_remote_id: dict[object, str] = {}
        by_ssrc: dict[tuple[str, object], str] = {}
        for report_id, report, direction in local:
            named = report.get("remoteId")
            if type(named) is str:
                by_remote_id[named] = report_id
            ssrc = report.get("ssrc")
            if type(ssrc) is int or type(ssrc) is str:
                by_ssrc.setdefault((direction, ssrc), report_id)
        for report_id, report, direction in unmatched:
            target = by_remote_id.get(report_id)
            if target is None or direction_of[target] != direction:
                ssrc = report.get("ssrc")
                hashable = type(ssrc) is int or type(ssrc) is str
                target = by_ssrc.get((direction, ssrc)) if hashable else None
            if target is not None:
                found.setdefault(target, report_id)
    return found


def _selected(pair_id: str, pair: Report, reports: dict[str, Report]) -> SelectedPair:
    local = _linked(reports, pair, "localCandidateId")
    remote = _linked(reports, pair, "remoteCandidateId")
    if local is not None:
        local_type = candidate_type(local.get("candidateType"))
        protocol = _text(local.get("protocol") or local.get("transport"))
    else:
        local_type = candidate_type(pair.get("googLocalCandidateType"))
        protocol = _text(pair.get("googTransportType"))
    if remote is not None:
        remote_type = candidate_type(remote.get("candidateType"))
    else:
        remote_type = candidate_type(pair.get("googRemoteCandidateType"))
    relay = _text(local.get("relayProtocol")) if local and local_type == "relay" else None
    network = _text(local.get("networkType")) if local is not None else None
    return SelectedPair(
        pair_id, local_type, remote_type, protocol, relay, network, pair, local, remote
    )


class StatsInterpreter:
    """Feed it every event in dump order (``read``); getStats events give a
    ``StatsRead``. Connections are followed in the order they first appear (in any
    event), at most ``max_connections`` of them: the same order every consumer caps
    its own lists by, so a consumer with a lower cap finds each of its connections
    here."""

    def __init__(self, max_connections: int = MAX_CONNECTIONS) -> None:
        self.max_connections = max_connections
        self.connections: dict[str | None, _Connection] = {}
        self._counted = 0

    def read(self, event: Event) -> StatsRead | None:
        pc_id = event.pc_id
        connection = self.connections.get(pc_id)
        if connection is None:
            if pc_id is not None:
                if self._counted >= self.max_connections:
                    return None
                self._counted += 1
            connection = self.connections[pc_id] = _Connection(pc_id)
        if event.method != STATS_METHOD:
            return None
        return connection.read(event)

    @property
    def tracks_omitted(self) -> int:
        return sum(connection.tracks_omitted for connection in self.connections.values())


class StatsConsumer(Protocol):
    """One view of the interpreter's output (the summary, the viewer's series, ...):
    given every event, with what the interpreter read from it when it is a getStats
    of a connection within the caps."""

    @property
    def max_connections(self) -> int: ...

    def consume(self, event: Event, read: StatsRead | None) -> None: ...


def analyse(events: Iterable[Event], consumers: Iterable[StatsConsumer]) -> None:
    """One pass over ``events`` feeding every consumer from one interpreter."""
    listed = list(consumers)
    interpreter = StatsInterpreter(max((c.max_connections for c in listed), default=0))
    for event in events:
        read = interpreter.read(event)
        for consumer in listed:
            consumer.consume(event, read)


def interpreted(
    events: Iterable[Event], max_connections: int = MAX_CONNECTIONS
) -> Iterator[tuple[Event, StatsRead | None]]:
    """Each event with what the interpreter read from it, for a single consumer."""
    interpreter = StatsInterpreter(max_connections)
    for event in events:
        yield event, interpreter.read(event)
