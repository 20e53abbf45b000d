"""Every session feature we compute, as data: name, level, type, unit, definition.

The features answer questions across many sessions ("how many calls on Safari needed
TURN/TCP?", "p95 time to connect by country"). The reference set is the one the
rtcstats.com extractor computes (``packages/rtcstats-features`` of github
rtcstats/rtcstats): 161 features documented in its features.md, 28 about the client,
69 about one peer connection, 64 about one media track. We compute all of them under
the names of its database columns (the peer's camelCase name in snake_case:
``iceConnectionTime`` → ``ice_connection_time``; its ``<kind>Ended`` row becomes
``audio_ended`` and ``video_ended``), with the same definitions, so that its
extractor and ours give the same values on the same dump. Ours are marked
``peer=None``: geolocation with ASN, quality scores, and, where we judge a peer
definition wrong, our version beside the peer's (the peer's value stays under its
name; the definition says why ours differs).

This list is the one place these facts live: docs/features.md is generated from it
(``python -m rtcstats_server.cli.features_reference``), the parity bench maps the
peer's output onto our names with it, and the tests check that each feature listed
has a known value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal

Level = Literal["client", "connection", "track"]
FeatureType = Literal["boolean", "integer", "number", "string", "object"]

LEVELS: Final[tuple[Level, ...]] = ("client", "connection", "track")
#: The peer's features.md rows per level (a ``<kind>…`` row counts once).
PEER_ROWS: Final[dict[Level, int]] = {"client": 28, "connection": 69, "track": 64}

_UPPER: Final = re.compile(r"([A-Z])")


def snake_case(camel: str) -> str:
    """The peer's column name for one of its feature names (as its Postgres layer
    derives it: an underscore before each capital, then lower case; digits stay)."""
    return _UPPER.sub(r"_\1", camel).lower()


@dataclass(frozen=True, slots=True)
class Feature:
    """One feature: what it is called, where it lives, what it means."""

    name: str
    level: Level
    type: FeatureType
    #: ``ms``, ``s``, ``epoch ms``, ``bit/s``, ``fraction`` (0..1), ``count``, ``px``, ...
    unit: str | None
    #: One line, in our words.
    definition: str
    #: The docs section it is listed under.
    section: str
    #: The peer's name for it (camelCase); None for ours.
    peer: str | None = None
    #: The peer's features.md row when it documents a family (``<kind>Ended``).
    peer_row: str | None = None
    #: The tracks it exists for (``inbound``, ``outbound video``, ...); empty: all.
    scope: str = ""
    #: For ours: the peer feature(s) it stands beside, whose definition we judge wrong.
    beside: tuple[str, ...] = ()

    @property
    def origin(self) -> Literal["peer", "ours"]:
        return "ours" if self.peer is None else "peer"


# Sections, in the order docs/features.md lists them.
_S_CLIENT = "Page and device"
_S_GUM = "getUserMedia"
_S_GDM = "getDisplayMedia and enumerateDevices"
_S_WS = "Collector websocket"
_S_GUM_TRACKS = "Tracks obtained from getUserMedia"
_S_CLIENT_GEO = "Client location (ours)"
_S_SESSION_SCORES = "Session scores (ours)"
_S_PC = "Connection life"
_S_API = "API failures and timing"
_S_DTLS = "DTLS and connection state"
_S_ICE = "ICE"
_S_CONFIG = "Configuration"
_S_CANDIDATES = "Candidates"
_S_PAIR = "First selected candidate pair"
_S_AVERAGES = "Lifetime averages"
_S_GEO = "Geolocation"
_S_TRACK = "Track identity"
_S_CODEC = "Codec"
_S_RES = "Resolution"
_S_COUNTERS = "Counters (both directions)"
_S_OUT = "Outbound only"
_S_IN = "Inbound only"
_S_SCORES = "Track scores (ours)"

SECTIONS: Final[dict[Level, tuple[str, ...]]] = {
    "client": (_S_CLIENT, _S_GUM, _S_GDM, _S_WS, _S_GUM_TRACKS, _S_CLIENT_GEO, _S_SESSION_SCORES),
    "connection": (
        _S_PC,
        _S_API,
        _S_DTLS,
        _S_ICE,
        _S_CONFIG,
        _S_CANDIDATES,
        _S_PAIR,
        _S_AVERAGES,
        _S_GEO,
    ),
    "track": (_S_TRACK, _S_CODEC, _S_RES, _S_COUNTERS, _S_OUT, _S_IN, _S_SCORES),
}

_B: Final = "boolean"
_I: Final = "integer"
_N: Final = "number"
_T: Final = "string"
_O: Final = "object"


def _peer(
    level: Level,
    section: str,
    peer: str,
    kind: FeatureType,
    unit: str | None,
    definition: str,
    scope: str = "",
    row: str | None = None,
) -> Feature:
    return Feature(snake_case(peer), level, kind, unit, definition, section, peer, row, scope)


def _ours(
    level: Level,
    section: str,
    name: str,
    kind: FeatureType,
    unit: str | None,
    definition: str,
    scope: str = "",
    beside: tuple[str, ...] = (),
) -> Feature:
    return Feature(name, level, kind, unit, definition, section, None, None, scope, beside)


def _client() -> Iterator[Feature]:
    c: Level = "client"
    yield _peer(
        c,
        _S_CLIENT,
        "startTime",
        _I,
        "epoch ms",
        "Time of the first client-level event: when the trace began.",
    )
    yield _peer(
        c,
        _S_CLIENT,
        "duration",
        _I,
        "ms",
        "Time from the first to the last client-level event, the collector's close line included.",
    )
    yield _peer(
        c,
        _S_CLIENT,
        "userAgentData",
        _O,
        None,
        "navigator.userAgentData (brands, mobile, platform) as the page sent it "
        "at start; Chromium browsers only.",
    )
    yield _peer(
        c,
        _S_CLIENT,
        "operatingSystem",
        _T,
        None,
        "userAgentData.platform as sent (Windows, macOS, Linux, Android, ...), "
        "not normalised; absent without userAgentData (Firefox, Safari).",
    )
    yield _peer(
        c,
        _S_CLIENT,
        "hardwareConcurrency",
        _I,
        "count",
        "navigator.hardwareConcurrency: logical CPU cores the page may use.",
    )
    yield _peer(
        c,
        _S_CLIENT,
        "deviceMemory",
        _N,
        "GiB",
        "navigator.deviceMemory: the device's RAM as the browser rounds it "
        "(a power of two, capped).",
    )
    yield _peer(
        c,
        _S_CLIENT,
        "cpuPerformance",
        _I,
        None,
        "navigator.cpuPerformance: the browser's coarse CPU performance tier.",
    )
    yield _peer(
        c,
        _S_CLIENT,
        "screen",
        _O,
        None,
        "Screen width, height and device pixel ratio sent at start.",
    )
    yield _peer(c, _S_CLIENT, "window", _O, None, "Window width and height sent at start.")
    yield _peer(
        c,
        _S_CLIENT,
        "reloadCount",
        _I,
        "count",
        "How often the page had been reloaded, when the client sends it.",
    )

    yield _peer(c, _S_GUM, "calledGetUserMedia", _B, None, "getUserMedia was called at least once.")
    yield _peer(
        c,
        _S_GUM,
        "calledGetUserMediaAudio",
        _B,
        None,
        "A getUserMedia call had a truthy audio constraint.",
    )
    yield _peer(
        c,
        _S_GUM,
        "calledGetUserMediaVideo",
        _B,
        None,
        "A getUserMedia call had a truthy video constraint.",
    )
    yield _peer(
        c,
        _S_GUM,
        "calledGetUserMediaCombined",
        _B,
        None,
        "One getUserMedia call asked for audio and video together.",
    )
    yield _peer(
        c,
        _S_GUM,
        "getUserMediaError",
        _T,
        None,
        "The error of the first getUserMedia call that failed.",
    )
    yield _peer(c, _S_GUM, "getUserMediaErrorCount", _I, "count", "getUserMedia calls that failed.")
    yield _peer(
        c, _S_GUM, "getUserMediaSuccessCount", _I, "count", "getUserMedia calls that succeeded."
    )
    yield _peer(
        c,
        _S_GUM,
        "audioDeviceUsbId",
        _T,
        None,
        "USB vendor:product id ending the label of the first microphone "
        "getUserMedia returned, e.g. 046d:085e.",
    )
    yield _peer(
        c,
        _S_GUM,
        "videoDeviceUsbId",
        _T,
        None,
        "USB vendor:product id ending the label of the first camera getUserMedia returned.",
    )

    yield _peer(
        c, _S_GDM, "calledGetDisplayMedia", _B, None, "getDisplayMedia was called at least once."
    )
    yield _peer(
        c,
        _S_GDM,
        "calledGetDisplayMediaAudio",
        _B,
        None,
        "A getDisplayMedia call had a truthy audio constraint.",
    )
    yield _peer(
        c,
        _S_GDM,
        "calledGetDisplayMediaVideo",
        _B,
        None,
        "A getDisplayMedia call did not set video to false (video is its default).",
    )
    yield _peer(
        c, _S_GDM, "getDisplayMediaErrorCount", _I, "count", "getDisplayMedia calls that failed."
    )
    yield _peer(
        c,
        _S_GDM,
        "getDisplayMediaSuccessCount",
        _I,
        "count",
        "getDisplayMedia calls that succeeded.",
    )
    yield _peer(c, _S_GDM, "enumerateDevicesCount", _I, "count", "enumerateDevices calls.")

    yield _peer(
        c,
        _S_WS,
        "webSocketConnectionTime",
        _I,
        "ms",
        "Time the rtcstats-js client took to open its websocket to the collector, "
        "as it reports it.",
    )

    for kind in ("audio", "video"):
        yield _peer(
            c,
            _S_GUM_TRACKS,
            f"{kind}Ended",
            _B,
            None,
            f"A {kind} track obtained from getUserMedia ended during the trace; absent otherwise.",
            row="<kind>Ended",
        )
    for kind in ("audio", "video"):
        yield _peer(
            c,
            _S_GUM_TRACKS,
            f"{kind}ShortDuration",
            _B,
            None,
            f"A {kind} track obtained from getUserMedia ended less than 1 s after "
            "it was obtained; absent otherwise.",
            row="<kind>ShortDuration",
        )

    where = "the address the client's websocket came from (before IP masking)"
    yield _ours(
        c, _S_CLIENT_GEO, "location_continent", _T, None, f"Continent (English name) of {where}."
    )
    yield _ours(
        c, _S_CLIENT_GEO, "location_country", _T, None, f"Country (English name) of {where}."
    )
    yield _ours(c, _S_CLIENT_GEO, "location_city", _T, None, f"City (English name) of {where}.")
    yield _ours(c, _S_CLIENT_GEO, "location_asn", _I, None, f"Autonomous system number of {where}.")
    yield _ours(
        c,
        _S_CLIENT_GEO,
        "location_organization",
        _T,
        None,
        f"Organisation of the autonomous system of {where}.",
    )

    yield _ours(
        c,
        _S_SESSION_SCORES,
        "worst_estimated_mos",
        _N,
        "MOS 1-4.5",
        "The lowest estimated_mos of the session's audio tracks.",
    )
    yield _ours(
        c,
        _S_SESSION_SCORES,
        "worst_video_score",
        _N,
        "1-5",
        "The lowest video_score of the session's video tracks.",
    )


def _connection() -> Iterator[Feature]:
    c: Level = "connection"
    yield _ours(
        c,
        _S_PC,
        "id",
        _T,
        None,
        "The peer connection's id in the dump (PC_0, ...): with the session id, "
        "the key of this row. An identifier, not counted as a feature.",
    )
    yield _peer(
        c, _S_PC, "startTime", _I, "epoch ms", "Time of the connection's first event (with a time)."
    )
    yield _peer(
        c, _S_PC, "duration", _I, "ms", "Time from the connection's first to its last event."
    )
    yield _peer(c, _S_PC, "closed", _B, None, "The connection's last event is its close() call.")
    yield _peer(c, _S_PC, "numberOfEvents", _I, "count", "Events of the connection.")
    yield _peer(
        c,
        _S_PC,
        "numberOfEventsNotGetStats",
        _I,
        "count",
        "Events of the connection other than getStats results.",
    )
    yield _peer(
        c,
        _S_PC,
        "numberOfNegotiations",
        _I,
        "count",
        "Signaling state changes to stable: completed offer/answer exchanges and rollbacks.",
    )
    yield _peer(
        c,
        _S_PC,
        "pendingNegotiationAtEnd",
        _B,
        None,
        "The last signaling state before closed was not stable; absent without "
        "signaling state changes.",
    )
    yield _peer(
        c,
        _S_PC,
        "signalingDelay",
        _I,
        "ms",
        "From the first setLocalDescription of an offer to the next "
        "setRemoteDescription of an answer.",
    )
    yield _peer(
        c,
        _S_PC,
        "statsTruncated",
        _B,
        None,
        "Some stats report appears in exactly 1000 getStats results, the first "
        "more than 60 s after the connection began: a webrtc-internals export that "
        "lost the start of its time series.",
    )
    yield _peer(
        c,
        _S_PC,
        "clockSkew",
        _I,
        "ms",
        "Event time minus the peer-connection report's timestamp in the first "
        "getStats result that has one, rounded: large after an OS suspend.",
    )

    yield _peer(
        c,
        _S_API,
        "addIceCandidateFailure",
        _T,
        None,
        "The error of the first addIceCandidate that failed.",
    )
    yield _peer(
        c,
        _S_API,
        "setLocalDescriptionFailure",
        _T,
        None,
        "The error of the first setLocalDescription that failed.",
    )
    yield _peer(
        c,
        _S_API,
        "setRemoteDescriptionFailure",
        _T,
        None,
        "The error of the first setRemoteDescription that failed.",
    )
    yield _peer(
        c,
        _S_API,
        "setLocalDescriptionDelay",
        _I,
        "ms",
        "How long the first setLocalDescription took: to the OnSuccess event with "
        "the same correlation id (the first following one when neither has an id).",
    )
    yield _peer(
        c,
        _S_API,
        "setLocalDescriptionRole",
        _T,
        None,
        "Type (offer, answer) of the first setLocalDescription; set with its delay.",
    )
    yield _peer(
        c,
        _S_API,
        "setRemoteDescriptionDelay",
        _I,
        "ms",
        "How long the first setRemoteDescription took, paired the same way.",
    )
    yield _peer(
        c,
        _S_API,
        "setRemoteDescriptionRole",
        _T,
        None,
        "Type (offer, answer) of the first setRemoteDescription; set with its delay.",
    )

    yield _peer(c, _S_DTLS, "connected", _B, None, "connectionState reached connected.")
    yield _peer(
        c,
        _S_DTLS,
        "connectionTime",
        _I,
        "ms",
        "From the first connectionState connecting to the next connected.",
    )
    yield _peer(
        c,
        _S_DTLS,
        "dtlsRole",
        _T,
        None,
        "dtlsRole of the first transport report that has a tlsVersion.",
    )
    yield _peer(
        c,
        _S_DTLS,
        "dtlsVersion",
        _T,
        None,
        "tlsVersion of that transport report (set once the handshake is done).",
    )
    yield _peer(c, _S_DTLS, "srtpCipher", _T, None, "srtpCipher of that transport report.")

    yield _peer(c, _S_ICE, "iceConnected", _B, None, "iceConnectionState reached connected.")
    yield _peer(
        c,
        _S_ICE,
        "iceConnectionTime",
        _I,
        "ms",
        "From the first iceConnectionState checking to the next connected.",
    )
    yield _peer(c, _S_ICE, "iceRestart", _B, None, "createOffer was called with iceRestart: true.")
    yield _peer(
        c,
        _S_ICE,
        "iceRestartFollowedBySetRemoteDescription",
        _B,
        None,
        "After that createOffer came a setLocalDescription of an offer and then a "
        "setRemoteDescription of an answer: the restart was negotiated.",
    )
    yield _peer(
        c,
        _S_ICE,
        "usingIceLite",
        _B,
        None,
        "A remote description has the a=ice-lite line: the other side is a server.",
    )

    yield _peer(
        c,
        _S_CONFIG,
        "configuredIceServers",
        _I,
        "count",
        "Entries of iceServers in the configuration given to the constructor; "
        "this and the next five are absent without iceServers.",
    )
    yield _peer(
        c,
        _S_CONFIG,
        "configuredIceTransportPolicy",
        _B,
        None,
        "iceTransportPolicy is relay (TURN forced).",
    )
    yield _peer(
        c,
        _S_CONFIG,
        "configuredIceServersStun",
        _B,
        None,
        "Some configured URL starts with stun:; absent otherwise.",
    )
    yield _peer(
        c,
        _S_CONFIG,
        "configuredIceServersTurns",
        _B,
        None,
        "Some configured URL starts with turns:; absent otherwise.",
    )
    yield _peer(
        c,
        _S_CONFIG,
        "configuredIceServersTurnUdp",
        _B,
        None,
        "Some configured turn: URL ends with ?transport=udp; absent otherwise.",
    )
    yield _peer(
        c,
        _S_CONFIG,
        "configuredIceServersTurnTcp",
        _B,
        None,
        "Some configured turn: URL ends with ?transport=tcp; absent otherwise.",
    )
    yield _peer(
        c,
        _S_CONFIG,
        "configuredBundlePolicy",
        _T,
        None,
        "bundlePolicy of the configuration, when set.",
    )
    yield _peer(
        c,
        _S_CONFIG,
        "configuredAlwaysNegotiateDataChannels",
        _B,
        None,
        "alwaysNegotiateDataChannels of the configuration, when set.",
    )

    for peer_kind, what in (
        ("Host", "a host candidate"),
        ("Mdns", "a host candidate whose address ends in .local (mDNS)"),
        ("Srflx", "a server-reflexive (srflx) candidate"),
        ("Turn", "a relay (TURN) candidate"),
    ):
        yield _peer(
            c,
            _S_CANDIDATES,
            f"added{peer_kind}Candidate",
            _B,
            None,
            f"addIceCandidate was given {what}; candidates inside a remote "
            "description do not count.",
        )
    yield _peer(
        c,
        _S_CANDIDATES,
        "addedNullCandidate",
        _B,
        None,
        "addIceCandidate was called with null (the remote's end of candidates).",
    )
    yield _peer(
        c,
        _S_CANDIDATES,
        "addedConnectableIceTcpCandidate",
        _B,
        None,
        "A passive ICE-TCP candidate (one we can connect to) came from the remote, "
        "through addIceCandidate or in a remote description.",
    )
    for peer_kind, what in (
        ("Host", "a host candidate"),
        ("Mdns", "a host candidate whose address ends in .local (mDNS)"),
        ("Srflx", "a server-reflexive (srflx) candidate"),
        ("Turn", "a relay (TURN) candidate"),
    ):
        yield _peer(
            c,
            _S_CANDIDATES,
            f"gathered{peer_kind}Candidate",
            _B,
            None,
            f"onicecandidate produced {what}.",
        )
    for transport in ("Udp", "Tcp", "Tls"):
        yield _peer(
            c,
            _S_CANDIDATES,
            f"gatheringTimeTurn{transport}",
            _I,
            "ms",
            f"From iceGatheringState gathering to the first local relay candidate "
            f"whose relayProtocol is {transport.lower()}, in the first gathering "
            "phase only (it ends at complete).",
        )

    pair = "the selected candidate pair of the first getStats result after connected"
    yield _peer(
        c,
        _S_PAIR,
        "firstCandidatePairLocalAddress",
        _T,
        None,
        f"Address of the local candidate of {pair}.",
    )
    yield _peer(
        c,
        _S_PAIR,
        "firstCandidatePairLocalProtocol",
        _T,
        None,
        "Transport protocol (udp, tcp) of that local candidate.",
    )
    yield _peer(
        c,
        _S_PAIR,
        "firstCandidatePairLocalNetworkType",
        _T,
        None,
        "networkType (wifi, ethernet, cellular, vpn, ...) of that local candidate.",
    )
    yield _peer(
        c,
        _S_PAIR,
        "firstCandidatePairLocalType",
        _T,
        None,
        "Type (host, srflx, prflx, relay) of that local candidate.",
    )
    yield _peer(
        c,
        _S_PAIR,
        "firstCandidatePairLocalTypePreference",
        _I,
        None,
        "That local candidate's priority shifted right by 24 bits (its type "
        "preference); 0 when the report has no priority.",
    )
    yield _peer(
        c,
        _S_PAIR,
        "firstCandidatePairLocalRelayProtocol",
        _T,
        None,
        "relayProtocol (udp, tcp, tls) of that local candidate when it is a relay.",
    )
    yield _peer(
        c,
        _S_PAIR,
        "firstCandidatePairLocalRelayUrl",
        _T,
        None,
        "url of the TURN server that local relay candidate came from.",
    )
    yield _peer(
        c,
        _S_PAIR,
        "firstCandidatePairRemoteAddress",
        _T,
        None,
        "Address of the remote candidate of that pair.",
    )
    yield _peer(
        c,
        _S_PAIR,
        "firstCandidatePairRemoteType",
        _T,
        None,
        "Type of the remote candidate of that pair.",
    )
    yield _ours(
        c,
        _S_PAIR,
        "first_candidate_pair_local_priority",
        _I,
        None,
        "The local candidate's priority itself, absent when the report has none. "
        "Beside the peer's type preference, which is 0 both for a missing "
        "priority and for a real 0 (Chrome's TURN/TLS relay).",
        beside=("first_candidate_pair_local_type_preference",),
    )

    yield _peer(
        c,
        _S_AVERAGES,
        "averageStunRoundTripTime",
        _N,
        "s",
        "Sum of totalRoundTripTime over sum of responsesReceived, each taken from "
        "the last report of every candidate pair that was selected (the counters "
        "restart when the pair changes).",
    )
    yield _peer(
        c,
        _S_AVERAGES,
        "averageOutboundBitrate",
        _N,
        "bit/s",
        "Growth of the selected transport's bytesSent, times 8, over the seconds from "
        "the first result where it had sent and received bytes to the last result with "
        "a selected pair.",
    )
    yield _peer(
        c, _S_AVERAGES, "averageInboundBitrate", _N, "bit/s", "The same with bytesReceived."
    )

    first = "before the first getStats result"
    for prefix, peer_prefix, what in (
        (
            "rtcstats_location",
            "rtcstatsLocation",
            "the local candidate of the first getStats result's selected pair (matched by "
            f"address to a candidate gathered {first})",
        ),
        (
            "rtcstats_peer_location",
            "rtcstatsPeerLocation",
            "the remote candidate of that pair (matched by address to an addIceCandidate "
            f"{first}; candidates inside a remote description do not count)",
        ),
    ):
        for part in ("Continent", "Country", "City"):
            yield _peer(
                c,
                _S_GEO,
                f"{peer_prefix}{part}",
                _T,
                None,
                f"{part} (English name) of {what}, looked up before IP masking.",
            )
        yield _ours(c, _S_GEO, f"{prefix}_asn", _I, None, f"Autonomous system number of {what}.")
        yield _ours(
            c,
            _S_GEO,
            f"{prefix}_organization",
            _T,
            None,
            f"Organisation of the autonomous system of {what}.",
        )
    for part in ("Continent", "Country", "City"):
        yield _peer(
            c,
            _S_GEO,
            f"rtcstatsRelayLocation{part}",
            _T,
            None,
            f"{part} (English name) of the last local candidate with a known "
            f"location gathered {first}: of any type, not only relay, despite the "
            "name (a srflx candidate gives the client's own location).",
        )
    turn = (
        "the first relay candidate gathered that has a location (the TURN server's relayed address)"
    )
    for part in ("continent", "country", "city"):
        yield _ours(
            c,
            _S_GEO,
            f"turn_location_{part}",
            _T,
            None,
            f"{part.capitalize()} (English name) of {turn}. Beside the peer's "
            "relay location, which is not always a relay's.",
            beside=(f"rtcstats_relay_location_{part}",),
        )
    yield _ours(c, _S_GEO, "turn_location_asn", _I, None, f"Autonomous system number of {turn}.")
    yield _ours(
        c,
        _S_GEO,
        "turn_location_organization",
        _T,
        None,
        f"Organisation of the autonomous system of {turn}.",
    )


def _track() -> Iterator[Feature]:
    t: Level = "track"
    yield _ours(
        t,
        _S_TRACK,
        "stats_id",
        _T,
        None,
        "id of the track's inbound-rtp or outbound-rtp report: with the connection, "
        "the key of this row. An identifier, not counted as a feature.",
    )
    yield _peer(t, _S_TRACK, "kind", _T, None, "audio or video.")
    yield _peer(
        t, _S_TRACK, "direction", _T, None, "outbound (we send it) or inbound (we receive it)."
    )
    yield _peer(t, _S_TRACK, "trackIdentifier", _T, None, "The MediaStreamTrack's id.")
    yield _peer(
        t,
        _S_TRACK,
        "startTime",
        _I,
        "epoch ms",
        "Time of the event that brought the track to the connection (addTrack, "
        "addTransceiver, replaceTrack, ontrack); without one (a layer past the first, a "
        "stream no event names), of the first result holding its report.",
    )
    yield _peer(
        t,
        _S_TRACK,
        "hasNullVideoDecoder",
        _B,
        None,
        "Some report named NullVideoDecoder as its decoderImplementation: the "
        "browser could not decode.",
        scope="inbound video",
    )
    yield _peer(
        t,
        _S_TRACK,
        "timeToFirstFrame",
        _I,
        "ms",
        "From the track's start to its first unmute event, rounded down; absent when negative.",
        scope="inbound",
    )

    codec = "of the codec report the track's codecId names, in the first result having both"
    yield _peer(t, _S_CODEC, "codecMimeType", _T, None, f"mimeType {codec}.")
    yield _peer(
        t,
        _S_CODEC,
        "codecSdpFmtpLine",
        _T,
        None,
        f"sdpFmtpLine {codec}; empty when the codec has none.",
    )

    over = "over every result where the track has a frameWidth and frameHeight"
    yield _peer(
        t,
        _S_RES,
        "commonWidth",
        _I,
        "px",
        f"The most frequent frameWidth {over} (ties: the smallest). Taken apart from "
        "the height, so the pair may never have occurred.",
        scope="video",
    )
    yield _peer(
        t,
        _S_RES,
        "commonHeight",
        _I,
        "px",
        f"The most frequent frameHeight {over} (ties: the smallest).",
        scope="video",
    )
    yield _peer(t, _S_RES, "minWidth", _I, "px", f"The smallest frameWidth {over}.", scope="video")
    yield _peer(
        t, _S_RES, "minHeight", _I, "px", f"The smallest frameHeight {over}.", scope="video"
    )
    yield _peer(t, _S_RES, "maxWidth", _I, "px", f"The largest frameWidth {over}.", scope="video")
    yield _peer(t, _S_RES, "maxHeight", _I, "px", f"The largest frameHeight {over}.", scope="video")
    yield _ours(
        t,
        _S_RES,
        "common_resolution",
        _T,
        None,
        f"The most frequent frameWidth x frameHeight pair {over}, as 1280x720 (ties: "
        "the first seen). Beside the peer's common width and height, whose modes "
        "are counted apart and can pair a width with a height never sent together.",
        scope="video",
        beside=("common_width", "common_height"),
    )

    last = "in the last result that has the track"
    yield _peer(
        t,
        _S_COUNTERS,
        "duration",
        _I,
        "ms",
        "From the track's start to the time of the last result that has it, rounded "
        "down; 0 when no result has it.",
    )
    yield _peer(
        t,
        _S_COUNTERS,
        "frameCount",
        _I,
        "count",
        f"framesEncoded (outbound) or framesDecoded (inbound) {last}.",
        scope="video",
    )
    yield _peer(
        t,
        _S_COUNTERS,
        "keyFrameCount",
        _I,
        "count",
        f"keyFramesEncoded or keyFramesDecoded {last}.",
        scope="video",
    )
    yield _peer(t, _S_COUNTERS, "qpSum", _I, None, f"qpSum {last}.", scope="video")
    yield _peer(
        t,
        _S_COUNTERS,
        "nackCount",
        _I,
        "count",
        f"nackCount {last}: NACKs received (outbound) or sent (inbound).",
    )
    yield _peer(t, _S_COUNTERS, "pliCount", _I, "count", f"pliCount {last}.", scope="video")
    yield _peer(t, _S_COUNTERS, "firCount", _I, "count", f"firCount {last}.", scope="video")

    yield _peer(
        t,
        _S_OUT,
        "averageEncodeTime",
        _N,
        "s",
        f"totalEncodeTime / framesEncoded {last}.",
        scope="outbound video",
    )
    for reason in ("bandwidth", "cpu", "other"):
        yield _peer(
            t,
            _S_OUT,
            f"{reason}QualityLimitationPercentage",
            _N,
            "fraction",
            f"qualityLimitationDurations.{reason} over the sum of all its durations "
            f"{last} (a fraction despite the name).",
            scope="outbound video",
        )
    yield _peer(
        t,
        _S_OUT,
        "qualityLimitationResolutionChanges",
        _I,
        "count",
        f"qualityLimitationResolutionChanges {last}.",
        scope="outbound video",
    )
    yield _peer(
        t, _S_OUT, "rid", _T, None, f"rid (simulcast layer) {last}.", scope="outbound video"
    )
    yield _peer(
        t,
        _S_OUT,
        "encodingIndex",
        _I,
        None,
        f"encodingIndex (simulcast layer) {last}.",
        scope="outbound video",
    )
    yield _peer(
        t,
        _S_OUT,
        "encoderImplementation",
        _T,
        None,
        f"encoderImplementation {last}: which encoder, hardware or software.",
        scope="outbound",
    )
    yield _peer(
        t,
        _S_OUT,
        "powerEfficientEncoder",
        _B,
        None,
        f"powerEfficientEncoder {last}.",
        scope="outbound video",
    )
    yield _peer(
        t,
        _S_OUT,
        "psnrMeasurements",
        _I,
        "count",
        f"psnrMeasurements {last}, when non-zero.",
        scope="outbound video",
    )
    for plane in ("Y", "U", "V"):
        yield _peer(
            t,
            _S_OUT,
            f"psnrSum{plane}",
            _N,
            "dB",
            f"psnrSum.{plane.lower()} {last}, when psnrMeasurements is non-zero.",
            scope="outbound video",
        )
    yield _peer(
        t,
        _S_OUT,
        "packetsSentWithEct1",
        _I,
        "count",
        f"packetsSentWithEct1 {last} (L4S).",
        scope="outbound",
    )
    remote = "of the remote-inbound-rtp report the track's remoteId names, in that result"
    yield _peer(
        t,
        _S_OUT,
        "packetsReceivedWithEct1",
        _I,
        "count",
        f"packetsReceivedWithEct1 {remote} (L4S).",
        scope="outbound",
    )
    yield _peer(
        t,
        _S_OUT,
        "packetsReceivedWithCe",
        _I,
        "count",
        f"packetsReceivedWithCe {remote}: congestion-experienced marks (L4S).",
        scope="outbound",
    )
    yield _peer(
        t,
        _S_OUT,
        "packetsWithBleachedEct1Marking",
        _I,
        "count",
        f"packetsWithBleachedEct1Marking {remote}: ECT(1) cleared on the way (L4S).",
        scope="outbound",
    )

    yield _peer(t, _S_IN, "freezeCount", _I, "count", f"freezeCount {last}.", scope="inbound video")
    yield _peer(
        t,
        _S_IN,
        "totalFreezesDuration",
        _N,
        "s",
        f"totalFreezesDuration {last}.",
        scope="inbound video",
    )
    yield _peer(
        t, _S_IN, "framesDropped", _I, "count", f"framesDropped {last}.", scope="inbound video"
    )
    yield _peer(
        t,
        _S_IN,
        "decoderImplementation",
        _T,
        None,
        f"decoderImplementation {last}: which decoder, hardware or software.",
        scope="inbound",
    )
    yield _peer(
        t,
        _S_IN,
        "powerEfficientDecoder",
        _B,
        None,
        f"powerEfficientDecoder {last}.",
        scope="inbound video",
    )
    yield _peer(
        t, _S_IN, "jitterBufferDelay", _N, "s", f"jitterBufferDelay {last}.", scope="inbound"
    )
    yield _peer(
        t,
        _S_IN,
        "jitterBufferMinimumDelay",
        _N,
        "s",
        f"jitterBufferMinimumDelay {last}.",
        scope="inbound",
    )
    yield _peer(
        t,
        _S_IN,
        "jitterBufferTargetDelay",
        _N,
        "s",
        f"jitterBufferTargetDelay {last}.",
        scope="inbound",
    )
    yield _peer(
        t,
        _S_IN,
        "jitterBufferEmittedCount",
        _I,
        "count",
        f"jitterBufferEmittedCount {last}: samples or frames out of the buffer.",
        scope="inbound",
    )
    yield _peer(
        t,
        _S_IN,
        "jitterBufferFlushes",
        _I,
        "count",
        f"jitterBufferFlushes {last}.",
        scope="inbound audio",
    )
    yield _peer(
        t,
        _S_IN,
        "hasPeriodicJitterBufferFlushes",
        _B,
        None,
        "jitterBufferFlushes grew at least three times and every interval between "
        "two growths lay within 3 to 5 s (a known NetEq fault); absent with fewer "
        "than three growths.",
        scope="inbound audio",
    )
    yield _peer(
        t, _S_IN, "totalProcessingDelay", _N, "s", f"totalProcessingDelay {last}.", scope="inbound"
    )
    yield _peer(
        t,
        _S_IN,
        "framesAssembledFromMultiplePackets",
        _I,
        "count",
        f"framesAssembledFromMultiplePackets {last}.",
        scope="inbound video",
    )
    yield _peer(
        t, _S_IN, "totalAssemblyTime", _N, "s", f"totalAssemblyTime {last}.", scope="inbound video"
    )
    yield _peer(
        t,
        _S_IN,
        "averageDecodeTime",
        _N,
        "s",
        f"totalDecodeTime / framesDecoded {last}.",
        scope="inbound video",
    )
    yield _peer(
        t,
        _S_IN,
        "averageInterFrameDelay",
        _N,
        "s",
        f"totalInterFrameDelay / framesDecoded {last}.",
        scope="inbound video",
    )
    yield _peer(
        t,
        _S_IN,
        "averageJitterBufferDelay",
        _N,
        "s",
        f"jitterBufferDelay / jitterBufferEmittedCount {last}.",
        scope="inbound",
    )
    yield _peer(
        t,
        _S_IN,
        "averageProcessingDelay",
        _N,
        "s",
        f"totalProcessingDelay / jitterBufferEmittedCount {last}.",
        scope="inbound",
    )
    yield _peer(
        t,
        _S_IN,
        "averageAssemblyTime",
        _N,
        "s",
        f"totalAssemblyTime / framesAssembledFromMultiplePackets {last}.",
        scope="inbound video",
    )
    yield _peer(
        t,
        _S_IN,
        "concealedSamples",
        _I,
        "count",
        f"concealedSamples {last}.",
        scope="inbound audio",
    )
    yield _peer(
        t,
        _S_IN,
        "totalSamplesReceived",
        _I,
        "count",
        f"totalSamplesReceived {last}.",
        scope="inbound audio",
    )
    yield _peer(
        t,
        _S_IN,
        "concealmentPercentage",
        _N,
        "fraction",
        f"concealedSamples / totalSamplesReceived {last} (a fraction).",
        scope="inbound audio",
    )
    yield _peer(
        t,
        _S_IN,
        "insertedSamplesForDeceleration",
        _I,
        "count",
        f"insertedSamplesForDeceleration {last}.",
        scope="inbound audio",
    )
    yield _peer(
        t,
        _S_IN,
        "removedSamplesForAcceleration",
        _I,
        "count",
        f"removedSamplesForAcceleration {last}.",
        scope="inbound audio",
    )
    yield _peer(
        t,
        _S_IN,
        "decelerationPercentage",
        _N,
        "fraction",
        f"insertedSamplesForDeceleration / totalSamplesReceived {last}.",
        scope="inbound audio",
    )
    yield _peer(
        t,
        _S_IN,
        "accelerationPercentage",
        _N,
        "fraction",
        f"removedSamplesForAcceleration / totalSamplesReceived {last}.",
        scope="inbound audio",
    )

    yield _ours(
        t,
        _S_SCORES,
        "r_factor",
        _N,
        "R 0-100",
        "ITU-T G.107 E-model transmission rating of what this audio track carried: "
        "delay, loss and codec (formula below).",
        scope="audio",
    )
    yield _ours(
        t,
        _S_SCORES,
        "estimated_mos",
        _N,
        "MOS 1-4.5",
        "r_factor mapped to a mean opinion score by G.107's formula.",
        scope="audio",
    )
    yield _ours(
        t,
        _S_SCORES,
        "video_score",
        _N,
        "1-5",
        "Our video quality score from resolution, frame rate, freezes and quality "
        "limitation (formula below).",
        scope="video",
    )


#: Every feature, client first, in the order docs/features.md lists them.
FEATURES: Final[tuple[Feature, ...]] = (*_client(), *_connection(), *_track())
#: Columns that name a row rather than describe it.
IDENTIFIERS: Final[frozenset[tuple[Level, str]]] = frozenset(
    {("connection", "id"), ("track", "stats_id")}
)


def by_level(level: Level) -> tuple[Feature, ...]:
    return tuple(f for f in FEATURES if f.level == level)


def peer_names(level: Level) -> dict[str, Feature]:
    """The peer's camelCase name → our feature, for one level."""
    return {f.peer: f for f in FEATURES if f.level == level and f.peer is not None}


def peer_row_counts() -> dict[Level, int]:
    """Rows of the peer's features.md per level, counted from this list."""
    counts: dict[Level, int] = dict.fromkeys(LEVELS, 0)
    seen: set[tuple[Level, str]] = set()
    for feature in FEATURES:
        if feature.peer is None:
            continue
        row = (feature.level, feature.peer_row or feature.peer)
        if row not in seen:
            seen.add(row)
            counts[feature.level] += 1
    return counts
