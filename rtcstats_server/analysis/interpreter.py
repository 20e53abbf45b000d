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

**The selected candidate pair**: the pair named by the first ``transport`` (or legacy
``googComponent``) whose ``selectedCandidatePairId`` is in the result; else the pair
that says it is selected (Firefox ``selected``, legacy ``googActiveConnection``).
Nothing else (``nominated`` pairs can be several). Its RTT and byte rates follow the
track rules (RTT once per measurement; rates over the same pair only).

What each track's samples hold (counters, loss, round-trip time, the other values) is
decided in tracks.py, the same way once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final, Protocol

from rtcstats_server.analysis.reports import (
    PRE_STANDARD_RTP,
    Report,
    Result,
    candidate_type,
    is_active_pair,
    measurement,
    media_kind,
    number,
)
from rtcstats_server.analysis.samples import (
    ReportIds,
    SelectedPair,
    StatsRead,
    Track,
    TrackSample,
    TransportSample,
)
from rtcstats_server.analysis.tracks import TrackReader, linked_report, positive, text
from rtcstats_server.dumps.events import STATS_METHOD, Event

#: Tracks followed per connection (an SFU's hundreds); later ones are not read.
MAX_TRACKS: Final = 256
#: Connections interpreted by default (a consumer asks for its own cap).
MAX_CONNECTIONS: Final = 100

#: What the interpreter does with a report, by its type (others are not read).
_RECV, _SEND, _REMOTE_INBOUND, _REMOTE_OUTBOUND, _TRANSPORT, _PAIR, _SSRC, _PRE, _PC = range(9)
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
    "peer-connection": _PC,
    **dict.fromkeys(PRE_STANDARD_RTP, _PRE),
}


def _is_active(report: object) -> bool:
    return type(report) is dict and is_active_pair(report)


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
        self.tracks: dict[str, TrackReader] = {}
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
        if plan is None or reports.keys() != plan.keys:
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
        ids = plan.ids
        transport = self._transport(t, reports, ids.transports, ids.pairs)
        return StatsRead(self.pc_id, t, reports, samples, transport, ids, self.tracks_omitted)

    def _plan(self, reports: Result) -> _Plan:
        """What to read in results with these stats ids: classifying the reports and
        pairing the far end's with ours is done once per set of ids, as a stats id
        keeps its type and its links in every browser."""
        local: list[tuple[str, Report, str]] = []
        legacy: list[tuple[str, Report, str]] = []
        pre_standard: list[tuple[str, Report, str]] = []
        remote: list[tuple[str, Report, str]] = []
        transports: list[str] = []
        pairs: list[str] = []
        peer_connection: str | None = None
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
            elif role == _PC:
                peer_connection = peer_connection or report_id
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
        tracks: list[tuple[str, TrackReader, str | None]] = []
        for report_id, report, direction in local:
            state = self._track(report_id, report, direction, reports, False)
            if state is not None:
                tracks.append((report_id, state, remote_of.get(report_id)))
        for report_id, report, direction in legacy:
            state = self._track(report_id, report, direction, reports, True)
            if state is not None:
                tracks.append((report_id, state, None))
        self.tracks_omitted = max(self.tracks_omitted, self.refused)
        return _Plan(set(reports), tracks, ReportIds(transports, pairs, peer_connection))

    def _track(
        self,
        report_id: str,
        report: Report,
        direction: str,
        reports: Result,
        legacy: bool,
    ) -> TrackReader | None:
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
            text(report.get("rid")),
            None,
            None,
            codec,
            legacy,
        )
        state = self.tracks[report_id] = TrackReader(track)
        return state

    def _transport(
        self,
        t: float,
        reports: Result,
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
        dtls = text(chosen.get("dtlsState")) if chosen is not None else None
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
            seconds = positive(number(pair.get("currentRoundTripTime")))
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

    __slots__ = ("ids", "keys", "tracks")

    def __init__(
        self,
        keys: set[str],
        tracks: list[tuple[str, TrackReader, str | None]],
        ids: ReportIds,
    ) -> None:
        self.keys = keys
        #: (local report id, its track, the far end's report id about it)
        self.tracks = tracks
        self.ids = ids


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


def _selected(pair_id: str, pair: Report, reports: Result) -> SelectedPair:
    local = linked_report(reports, pair, "localCandidateId")
    remote = linked_report(reports, pair, "remoteCandidateId")
    if local is not None:
        local_type = candidate_type(local.get("candidateType"))
        protocol = text(local.get("protocol") or local.get("transport"))
    else:
        local_type = candidate_type(pair.get("googLocalCandidateType"))
        protocol = text(pair.get("googTransportType"))
    if remote is not None:
        remote_type = candidate_type(remote.get("candidateType"))
    else:
        remote_type = candidate_type(pair.get("googRemoteCandidateType"))
    relay = text(local.get("relayProtocol")) if local and local_type == "relay" else None
    network = text(local.get("networkType")) if local is not None else None
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
