"""The quality summary of one session, computed in one pass over its events.

Media statistics are totals of the stats interpreter's samples (media.py), the same
samples the viewer charts; this module adds connection states, failures and the
client. Memory and the summary's size stay bounded whatever the dump holds: at most
``max_peer_connections`` connections are summarized one by one (further ones are
counted), each with a few sums per track (audio and video only), one quantile
sketch per series, and state timelines cut at ``max_listed`` entries; every string
that comes from the client is cut. What was cut is counted in ``omitted`` and the
summary says ``truncated: true``. ``record_fields`` also keeps the whole summary under
``SUMMARY_MAX_BYTES``, so a session record can always be written. Blocking work
(decompression, JSON): run it in a worker thread.

A damaged dump still gets a summary of what could be read, with ``summary_error``
saying what was wrong; this module raises nothing for bad input.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from rtcstats_server.analysis.findings import findings_for
from rtcstats_server.analysis.interpreter import StatsInterpreter
from rtcstats_server.analysis.media import MediaSummary, rounded, sketch_dict
from rtcstats_server.analysis.samples import StatsRead
from rtcstats_server.analysis.sketch import QuantileSketch
from rtcstats_server.analysis.useragent import parse_user_agent
from rtcstats_server.config import QualityConfig
from rtcstats_server.dumps.reader import ERROR_METHOD, DumpInfo, DumpReader, Event, file_chunks
from rtcstats_server.exceptions import DumpFormatError
from rtcstats_server.metadata.record import bounded

#: 2: media numbers from the stats interpreter (legacy stats, track-report freezes,
#: transport RTT once per measurement); docs/metadata.md says what changed.
SUMMARY_VERSION = 2

#: Longest id or name taken from the client into the summary (a pc id, an error name).
MAX_ID_CHARS = 256
#: Findings listed in a summary; each finding name is listed at least once.
MAX_FINDINGS = 100
#: The summary's largest JSON size; connections are dropped from its end past it.
SUMMARY_MAX_BYTES = 512 << 10

_API_CALLS = ("createOffer", "createAnswer", "setLocalDescription", "setRemoteDescription")
_API_FAILURES = frozenset(f"{name}OnFailure" for name in (*_API_CALLS, "addIceCandidate"))
_ERROR_NAME = re.compile(r"^\s*([A-Za-z]*(?:Error|Exception))\b")
_UFRAG = re.compile(r"a=ice-ufrag:(\S+)")
_CONNECTED = frozenset({"connected", "completed"})
_DROPPED = frozenset({"disconnected", "failed"})


def _text(value: object, limit: int = MAX_ID_CHARS) -> str | None:
    """A client-given string, cut; anything else (a number, an object) is not kept."""
    return value[:limit] if isinstance(value, str) else None


def error_name(value: object) -> str:
    """``NotAllowedError`` from whatever shape a client reported a failure in."""
    if isinstance(value, dict):
        name = value.get("name")
        if isinstance(name, str) and name:
            return name[:100]
        value = value.get("message", "")
    text = str(value)
    match = _ERROR_NAME.match(text)
    if match:
        return match.group(1)
    return text.split(":", 1)[0].strip()[:100] or "UnknownError"


class StateTrack:
    """One state machine of a connection (connection or ICE state): its timeline,
    when it first connected, dropped (connected → disconnected/failed), recovered,
    and failed."""

    __slots__ = (
        "connected_at",
        "dropped_at",
        "drops",
        "failed_at",
        "is_up",
        "omitted",
        "reconnects",
        "timeline",
    )

    def __init__(self) -> None:
        self.timeline: list[dict[str, Any]] = []
        self.omitted = 0
        self.connected_at: float | None = None
        self.failed_at: float | None = None
        self.dropped_at: float | None = None
        self.drops = 0
        self.reconnects = 0
        self.is_up = False

    def add(self, when: float, state: str, limit: int) -> None:
        if len(self.timeline) < limit:
            self.timeline.append({"at": when, "state": state[:MAX_ID_CHARS]})
        else:
            self.omitted += 1
        if state in _CONNECTED:
            if self.connected_at is None:
                self.connected_at = when
            elif not self.is_up and self.drops:
                self.reconnects += 1
            self.is_up = True
        elif state in _DROPPED:
            if self.is_up:
                self.drops += 1
                if self.dropped_at is None:
                    self.dropped_at = when
            self.is_up = False
            if state == "failed" and self.failed_at is None:
                self.failed_at = when
        elif state == "closed":
            self.is_up = False


class PeerConnectionSummary:
    def __init__(self, pc_id: str, limit: int) -> None:
        self.pc_id = pc_id
        self.limit = limit
        self.created_at: float | None = None
        self.closed_at: float | None = None
        self.connection = StateTrack()
        self.ice = StateTrack()
        self.dtls = StateTrack()
        self.ice_restarts = 0
        self.local_ufrag: str | None = None
        self.media = MediaSummary()
        self.selected: dict[str, Any] | None = None
        self.pair_changes = 0
        self.transport_rtt_ms = QuantileSketch()
        self.stats_samples = 0
        self.tracks_omitted = 0
        self.dtls_state: str | None = None

    # -- getStats ------------------------------------------------------------------------

    def stats(self, read: StatsRead | None) -> None:
        self.stats_samples += 1
        if read is None:
            return
        self.tracks_omitted = read.tracks_omitted
        self.media.add(read)
        transport = read.transport
        if transport is None:
            return
        state = transport.dtls_state
        if state is not None and state != self.dtls_state:
            self.dtls_state = state
            self.dtls.add(transport.t, state, self.limit)
        if transport.rtt_ms is not None:
            self.transport_rtt_ms.add(transport.rtt_ms)
        pair = transport.pair
        if transport.new_pair and pair is not None:
            self.pair_changes += transport.switched
            self.selected = {
                "local_type": _text(pair.local_type, 16),
                "remote_type": _text(pair.remote_type, 16),
                "protocol": _text(pair.protocol, 16),
                "relay_protocol": _text(pair.relay_protocol, 16),
                "network_type": _text(pair.network_type, 16),
            }

    # -- other events ------------------------------------------------------------------

    def event(self, event: Event) -> None:
        method, value, when = event.method, event.value, event.timestamp
        if method == "create":
            # A time of 0 (or less) is a missing time (an export without one), not 1970:
            # measured from it, a connection would connect after 55 years.
            if when > 0:
                self.created_at = when if self.created_at is None else min(self.created_at, when)
        elif method == "onconnectionstatechange" and isinstance(value, str):
            self.connection.add(when, value, self.limit)
        elif method == "oniceconnectionstatechange" and isinstance(value, str):
            self.ice.add(when, value, self.limit)
        elif method == "close":
            self.closed_at = when
        elif method == "restartIce":
            self.ice_restarts += 1
        elif method in ("setLocalDescription", "setLocalDescriptionOnSuccess"):
            sdp = value.get("sdp") if isinstance(value, dict) else None
            if isinstance(sdp, str):
                match = _UFRAG.search(sdp)
                if match:
                    ufrag = match.group(1)
                    if self.local_ufrag is not None and ufrag != self.local_ufrag:
                        self.ice_restarts += 1
                    self.local_ufrag = ufrag

    # -- result ------------------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        track = self.connection if self.connection.timeline else self.ice
        connect_ms = None
        if track.connected_at is not None and track.connected_at > 0 and self.created_at:
            connect_ms = max(track.connected_at - self.created_at, 0.0)
        return {
            "pc_id": self.pc_id[:MAX_ID_CHARS],
            "created_at": self.created_at,
            "closed_at": self.closed_at,
            "connected_at": track.connected_at,
            "connect_time_ms": rounded(connect_ms, 1),
            "connected": track.connected_at is not None,
            "ice_failed": self.ice.failed_at is not None,
            "ice_failed_at": self.ice.failed_at,
            "connection_failed": self.connection.failed_at is not None,
            "connection_failed_at": self.connection.failed_at,
            "dropped": track.drops > 0,
            "dropped_at": track.dropped_at,
            "drops": track.drops,
            "reconnects": track.reconnects,
            "ice_restarts": self.ice_restarts,
            "states": {
                "connection": self.connection.timeline,
                "ice": self.ice.timeline,
                "dtls": self.dtls.timeline,
            },
            "selected_candidate_pair": self.selected,
            "candidate_pair_changes": self.pair_changes,
            "transport_rtt_ms": sketch_dict(self.transport_rtt_ms),
            "stats_samples": self.stats_samples,
            "media": self.media.result(),
        }


class SessionSummarizer:
    """Feed it events (``add``), then ask for the ``result``.

    A consumer of the stats interpreter: ``add`` runs its own interpreter; in a pass
    that feeds several consumers from one interpreter (``interpreter.analyse``), the
    pass calls ``consume`` instead."""

    def __init__(self, config: QualityConfig, info: DumpInfo | None = None) -> None:
        self.config = config
        self.info = info
        self.limit = config.max_listed
        self.pcs: dict[str, PeerConnectionSummary] = {}
        self.created: set[str] = set()
        self.events = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.media_failures: list[dict[str, Any]] = []
        self.api_failures: list[dict[str, Any]] = []
        self.api_failure_count = 0
        self.errors: list[str] = []
        self.damaged_lines = 0
        self.user_agent = info.user_agent[:512] if info and info.user_agent else None
        self.user_agent_data: dict[str, Any] | None = None
        #: What the caps left out, by item; the summary lists the nonzero ones.
        self.omitted: Counter[str] = Counter()
        #: Connections past ``max_peer_connections``: created, and state failures seen.
        self.untracked: Counter[str] = Counter()
        self._interpreter: StatsInterpreter | None = None

    @property
    def max_connections(self) -> int:
        return self.config.max_peer_connections

    def pc(self, pc_id: str) -> PeerConnectionSummary | None:
        found = self.pcs.get(pc_id)
        if found is None:
            if len(self.pcs) >= self.config.max_peer_connections:
                return None
            found = self.pcs[pc_id] = PeerConnectionSummary(pc_id, self.limit)
        return found

    def add(self, event: Event) -> None:
        interpreter = self._interpreter
        if interpreter is None:
            interpreter = self._interpreter = StatsInterpreter(self.max_connections)
        self.consume(event, interpreter.read(event))

    def consume(self, event: Event, read: StatsRead | None) -> None:
        method = event.method
        if method == ERROR_METHOD:
            self.damaged_lines += 1
            if len(self.errors) < self.limit:
                self.errors.append(str(event.value)[:500])
            return
        self.events += 1
        when = event.timestamp
        if when > 0:
            self.first_at = when if self.first_at is None else min(self.first_at, when)
            self.last_at = when if self.last_at is None else max(self.last_at, when)
        pc_id = event.pc_id
        if pc_id is not None:
            summary = self.pc(pc_id)
            if summary is None:
                self._untracked(event)
            elif event.is_stats:
                summary.stats(read)
            else:
                summary.event(event)
                if method == "create":
                    self.created.add(pc_id)
        if method.endswith("OnFailure"):
            self._failure(event)
        elif method == "create" and pc_id is None and isinstance(event.value, dict):
            data = event.value.get("userAgentData")
            if isinstance(data, dict):
                self.user_agent_data = data
        elif method in ("identity", "connectionInfo") and isinstance(event.value, dict):
            agent = event.value.get("userAgent")
            if isinstance(agent, str) and not self.user_agent:
                self.user_agent = agent[:512]

    def _untracked(self, event: Event) -> None:
        """A connection past the cap: counted, so pc_count and failures stay right."""
        method, value = event.method, event.value
        if method == "create":
            self.untracked["peer_connections"] += 1
        elif value == "failed" and method == "oniceconnectionstatechange":
            self.untracked["ice_failed"] += 1
        elif value == "failed" and method == "onconnectionstatechange":
            self.untracked["connection_failed"] += 1

    def _failure(self, event: Event) -> None:
        method = event.method
        short = method.rsplit(".", 1)[-1]
        if short.endswith(("etUserMediaOnFailure", "etDisplayMediaOnFailure")):
            if len(self.media_failures) < self.limit:
                self.media_failures.append(
                    {
                        "method": short.removesuffix("OnFailure")[:MAX_ID_CHARS],
                        "error": error_name(event.value),
                        "message": str(event.value)[:500],
                        "at": event.timestamp,
                    }
                )
            else:
                self.omitted["media_failures"] += 1
        elif short in _API_FAILURES:
            self.api_failure_count += 1
            if len(self.api_failures) < self.limit:
                self.api_failures.append(
                    {
                        "pc_id": _text(event.pc_id),
                        "method": short.removesuffix("OnFailure"),
                        "message": str(event.value)[:500],
                        "at": event.timestamp,
                    }
                )
            else:
                self.omitted["api_failures"] += 1

    def result(self, error: str | None = None) -> dict[str, Any]:
        platform = parse_user_agent(self.user_agent).as_dict()
        if platform["os"] is None and self.user_agent_data:
            platform["os"] = _text(self.user_agent_data.get("platform"), 64) or None
        pcs = [self.pcs[pc_id].result() for pc_id in sorted(self.pcs)]
        omitted = Counter(self.omitted)
        omitted["state_changes"] += sum(
            track.omitted for pc in self.pcs.values() for track in (pc.connection, pc.ice, pc.dtls)
        )
        omitted["damaged_lines"] += self.damaged_lines - len(self.errors)
        omitted["tracks"] += sum(pc.tracks_omitted for pc in self.pcs.values())
        untracked = self.untracked["peer_connections"]
        omitted["peer_connections"] += untracked
        losses = [
            m["loss_pct"]
            for pc in pcs
            for m in pc["media"].values()
            if m["loss_pct"] is not None
            and m["packets"] + m["packets_lost"] >= max(self.config.min_packets_for_loss, 1)
        ]
        rtts = [
            sketch["p95"]
            for pc in pcs
            for sketch in (
                pc["transport_rtt_ms"],
                *(m["rtt_ms"] for m in pc["media"].values()),
            )
            if sketch is not None
        ]
        info = self.info
        summary_error = error or (self.errors[0] if self.errors else None)
        summary: dict[str, Any] = {
            "version": SUMMARY_VERSION,
            "dump": {
                "layout": info.layout if info else None,
                "client_protocol": info.client_protocol if info else None,
                "events": self.events,
                "damaged_lines": self.damaged_lines,
                "first_event_at": self.first_at,
                "last_event_at": self.last_at,
                "duration_s": rounded((self.last_at - self.first_at) / 1000, 3)
                if self.first_at is not None and self.last_at is not None
                else None,
            },
            "client": {**platform, "user_agent": self.user_agent},
            "pc_count": (len(self.created) or len(self.pcs)) + untracked,
            "ice_restarts": sum(pc["ice_restarts"] for pc in pcs),
            "media_failures": self.media_failures,
            "api_failures": self.api_failures,
            "api_failure_count": self.api_failure_count,
            "peer_connections": pcs,
            "untracked_peer_connections": dict(self.untracked) or None,
            "max_loss_pct": max(losses) if losses else None,
            "max_rtt_ms": max(rtts) if rtts else None,
            "summary_error": summary_error,
        }
        findings = findings_for(summary, self.config)
        summary["findings"] = listed_findings(findings)
        omitted["findings"] += len(findings) - len(summary["findings"])
        summary["omitted"] = {name: count for name, count in sorted(omitted.items()) if count}
        summary["truncated"] = bool(summary["omitted"])
        return summary


def listed_findings(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most ``MAX_FINDINGS``, in their order, the first of every name among them:
    a session with thousands of failed connections still shows each kind of problem."""
    if len(findings) <= MAX_FINDINGS:
        return findings
    keep: set[int] = set()
    names: set[str] = set()
    for index, finding in enumerate(findings):
        if finding["name"] not in names:
            names.add(finding["name"])
            keep.add(index)
    for index in range(len(findings)):
        if len(keep) >= MAX_FINDINGS:
            break
        keep.add(index)
    return [finding for index, finding in enumerate(findings) if index in keep]


def summarize_reader(reader: DumpReader, config: QualityConfig) -> dict[str, Any]:
    summarizer = SessionSummarizer(config, reader.info)
    error: str | None = None
    try:
        for event in reader:
            summarizer.add(event)
    except DumpFormatError as exc:  # only a strict reader raises; be safe anyway
        error = str(exc)
    return summarizer.result(error)


def summarize_chunks(chunks: Iterable[bytes], config: QualityConfig) -> dict[str, Any]:
    """The summary of a dump given as byte chunks (blocking: call from a thread)."""
    try:
        reader = DumpReader(chunks)
    except DumpFormatError as exc:
        return SessionSummarizer(config).result(str(exc))
    return summarize_reader(reader, config)


def summarize_file(path: Path, config: QualityConfig) -> dict[str, Any]:
    """The summary of a dump file (blocking: call from a thread)."""
    return summarize_chunks(file_chunks(path), config)


def fit_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as a store can hold it: every value bounded (``bounded``) and the
    whole under ``SUMMARY_MAX_BYTES`` of JSON, by dropping connections from its end
    (their findings stay). The caps above keep a summary far smaller; this is the
    guarantee that a session record can always be written."""
    summary = bounded(summary)
    pcs = summary.get("peer_connections")
    size = len(orjson.dumps(summary))
    while size > SUMMARY_MAX_BYTES and isinstance(pcs, list) and pcs:
        keep = len(pcs) // 2
        omitted = summary.setdefault("omitted", {})
        omitted["peer_connections"] = omitted.get("peer_connections", 0) + len(pcs) - keep
        summary["truncated"] = True
        del pcs[keep:]
        size = len(orjson.dumps(summary))
    if size > SUMMARY_MAX_BYTES:  # not reachable with the caps above; never unwritable
        summary = {
            key: summary.get(key)
            for key in ("version", "dump", "pc_count", "max_loss_pct", "max_rtt_ms")
        }
        summary.update(truncated=True, findings=[], summary_error="summary too large")
    return summary


def record_fields(summary: dict[str, Any]) -> dict[str, Any]:
    """What a session record gets: the summary, and flat fields stores index."""
    summary = fit_summary(summary)
    client = summary.get("client") or {}
    return {
        "quality": summary,
        "findings": sorted({f["name"] for f in summary.get("findings", [])}),
        "max_loss_pct": summary.get("max_loss_pct"),
        "max_rtt_ms": summary.get("max_rtt_ms"),
        "pc_count": summary.get("pc_count"),
        "browser": client.get("browser"),
        "os": client.get("os"),
        "summary_error": summary.get("summary_error"),
    }
