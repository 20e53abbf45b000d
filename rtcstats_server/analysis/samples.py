"""What the stats interpreter gives its consumers: tracks, and samples over time.

A *track* is one RTP stream of a peer connection in one direction: one local
``inbound-rtp``/``outbound-rtp`` report (or a legacy ``ssrc`` report), named by its
stats id. Each getStats result gives one ``TrackSample`` per track it holds, one
``TransportSample`` for the connection's selected candidate pair, and both together
as a ``StatsRead``. Values are ``None`` where the dialect or the moment has none.

The interpreter's rules (interpreter.py, tracks.py) decide every value here; consumers (the
summary, the viewer's series, features) only aggregate them, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rtcstats_server.analysis.reports import Report, Result

#: Every per-track value a consumer may chart or download: name → (title, unit).
#: Counts (``packets``, ``packets_lost``) are per sample interval.
TRACK_METRICS: Final[dict[str, tuple[str, str]]] = {
    "bitrate_kbps": ("Bitrate", "kbps"),
    "loss_pct": ("Packet loss", "%"),
    "packets_lost": ("Packets lost", "packets per sample"),
    "packets": ("Packets received or sent", "packets per sample"),
    "rtt_ms": ("Round-trip time", "ms"),
    "jitter_ms": ("Jitter", "ms"),
    "fps": ("Frames per second", "fps"),
    "frame_height": ("Resolution (frame height)", "px"),
    "audio_level": ("Audio level", "0..1"),
    "concealment_pct": ("Audio concealment", "%"),
}
#: Values that hold over the sample's interval (rates and counts), not at an instant.
INTERVAL_METRICS: Final = frozenset(
    {"bitrate_kbps", "loss_pct", "packets_lost", "packets", "concealment_pct"}
)


@dataclass(slots=True)
class Track:
    """Who a track is. Fixed once seen, except what a client reports later
    (``codec`` follows the report's ``codecId``; ``track_identifier`` and ``mid`` are
    filled in when they appear)."""

    pc_id: str | None
    stats_id: str
    kind: str
    direction: str  # send | recv
    ssrc: int | str | None
    rid: str | None
    mid: str | None
    track_identifier: str | None
    codec: str | None  # mime type, e.g. video/VP8
    legacy: bool  # read from a goog ``ssrc`` report

    @property
    def key(self) -> str:
        """The track's name within its connection (two reports of one ssrc, such as a
        re-created stream, are two tracks: the summary counts them apart too)."""
        return f"{self.direction}:{self.kind}:{self.stats_id}"

    @property
    def label(self) -> str:
        name = self.ssrc if self.ssrc is not None else self.stats_id
        rid = f" rid {self.rid}" if self.rid is not None else ""
        return f"{self.direction} {self.kind} {name}{rid}"


@dataclass(slots=True)
class TrackSample:
    """One track in one getStats result.

    Counts (``packets``, ``packets_lost``, ``bytes``, ``concealed_samples``,
    ``total_samples``, ``freeze_count``, ``freeze_s``, ``frames_dropped``) are what
    happened since the track's previous sample; for its first sample, and after its
    counters restarted (``reset``), since the counters began. ``interval_s`` is the
    time between the two reports, None when there is none to rate over (first
    sample, reset, same timestamp): then no rate (bitrate, counted fps) is given.
    ``report`` is the raw local report, ``remote`` the far end's report about this
    track (remote-inbound for what we send, remote-outbound for what we receive, the
    ``ssrc`` report itself for legacy stats) for any field not derived here.
    """

    track: Track
    t: float
    interval_s: float | None
    reset: bool
    report: Report
    remote: Report | None
    packets: float | None
    packets_lost: float | None
    bytes: float | None
    bitrate_kbps: float | None
    loss_pct: float | None
    rtt_ms: float | None
    jitter_ms: float | None
    fps: float | None
    frame_height: float | None
    audio_level: float | None
    concealment_pct: float | None
    concealed_samples: float | None
    total_samples: float | None
    freeze_count: float | None
    freeze_s: float | None
    frames_dropped: float | None

    def __init__(
        self,
        track: Track,
        t: float,
        interval_s: float | None,
        reset: bool,
        report: Report,
        remote: Report | None,
        packets: float | None,
        packets_lost: float | None,
        bytes: float | None,
        bitrate_kbps: float | None,
        loss_pct: float | None,
        rtt_ms: float | None,
        jitter_ms: float | None,
        fps: float | None,
        frame_height: float | None,
        audio_level: float | None,
        concealment_pct: float | None,
        concealed_samples: float | None,
        total_samples: float | None,
        freeze_count: float | None,
        freeze_s: float | None,
        frames_dropped: float | None,
    ) -> None:
        """Written out: a dataclass-generated ``__init__`` stays interpreted in the
        compiled build (mypyc), and one is called per track per getStats."""
        self.track = track
        self.t = t
        self.interval_s = interval_s
        self.reset = reset
        self.report = report
        self.remote = remote
        self.packets = packets
        self.packets_lost = packets_lost
        self.bytes = bytes
        self.bitrate_kbps = bitrate_kbps
        self.loss_pct = loss_pct
        self.rtt_ms = rtt_ms
        self.jitter_ms = jitter_ms
        self.fps = fps
        self.frame_height = frame_height
        self.audio_level = audio_level
        self.concealment_pct = concealment_pct
        self.concealed_samples = concealed_samples
        self.total_samples = total_samples
        self.freeze_count = freeze_count
        self.freeze_s = freeze_s
        self.frames_dropped = frames_dropped


@dataclass(slots=True)
class SelectedPair:
    """The candidate pair carrying a connection's media, as chosen by the one rule."""

    id: str
    local_type: str | None
    remote_type: str | None
    protocol: str | None
    relay_protocol: str | None
    network_type: str | None
    report: Report
    local: Report | None
    remote: Report | None


@dataclass(slots=True)
class TransportSample:
    """The connection's transport in one getStats result.

    ``new_pair``: the selected pair is not the one of the previous result (also the
    first selection); ``switched``: it replaced another pair. Byte rates are over the
    same pair only: the sample after a switch has none."""

    pc_id: str | None
    t: float
    pair: SelectedPair | None
    new_pair: bool
    switched: bool
    transport: Report | None
    dtls_state: str | None
    rtt_ms: float | None
    interval_s: float | None
    sent_kbps: float | None
    received_kbps: float | None

    def __init__(
        self,
        pc_id: str | None,
        t: float,
        pair: SelectedPair | None,
        new_pair: bool,
        switched: bool,
        transport: Report | None,
        dtls_state: str | None,
        rtt_ms: float | None,
        interval_s: float | None,
        sent_kbps: float | None,
        received_kbps: float | None,
    ) -> None:
        """Written out: a dataclass-generated ``__init__`` stays interpreted in the
        compiled build (mypyc), and one is called per track per getStats."""
        self.pc_id = pc_id
        self.t = t
        self.pair = pair
        self.new_pair = new_pair
        self.switched = switched
        self.transport = transport
        self.dtls_state = dtls_state
        self.rtt_ms = rtt_ms
        self.interval_s = interval_s
        self.sent_kbps = sent_kbps
        self.received_kbps = received_kbps


@dataclass(slots=True)
class ReportIds:
    """Which reports of a result are what, beside its tracks: classified once per set
    of stats ids (a stats id keeps its type), shared by every result with those ids,
    so a consumer looking for one kind of report does not scan them all."""

    #: ``transport`` (and legacy ``googComponent``) reports, in the result's order.
    transports: list[str]
    #: Candidate pairs, in the result's order.
    pairs: list[str]
    #: The ``peer-connection`` report, if any.
    peer_connection: str | None


@dataclass(slots=True)
class StatsRead:
    """Everything the interpreter read from one getStats event."""

    pc_id: str | None
    t: float
    reports: Result
    tracks: list[TrackSample]
    transport: TransportSample | None
    ids: ReportIds
    #: Tracks of this connection not followed (past ``interpreter.MAX_TRACKS``).
    tracks_omitted: int = 0

    def __init__(
        self,
        pc_id: str | None,
        t: float,
        reports: Result,
        tracks: list[TrackSample],
        transport: TransportSample | None,
        ids: ReportIds,
        tracks_omitted: int = 0,
    ) -> None:
        """Written out: a dataclass-generated ``__init__`` stays interpreted in the
        compiled build (mypyc), and one is called per track per getStats."""
        self.pc_id = pc_id
        self.t = t
        self.reports = reports
        self.tracks = tracks
        self.transport = transport
        self.ids = ids
        self.tracks_omitted = tracks_omitted
