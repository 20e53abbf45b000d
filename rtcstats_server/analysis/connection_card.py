"""A peer connection's summary card for the viewer: what an engineer asks first.

The state chains (ICE, connection, DTLS, signaling) as they changed, how long the
connection took to connect, the candidate pair that carried its media, every
candidate pair the client tried (the ICE grid), and whether the application changed
a description between ``createOffer``/``createAnswer`` and ``setLocalDescription``
(SDP munging). Fed event by event beside the view model's series (one pass), with
bounded state: the chains are capped, the grid keeps one row per pair id.

Addresses are masked as in a dump that leaves the server (``dumps.privacy``): the
card shows which network a pair used, not who was on it.
"""

from __future__ import annotations

from typing import Any, Final

from rtcstats_server.analysis.reports import Report, Result
from rtcstats_server.analysis.samples import StatsRead
from rtcstats_server.dumps.privacy import mask_text
from rtcstats_server.dumps.reader import Event

#: Event method → chain name; DTLS comes from the transport report of getStats.
STATE_METHODS: Final[dict[str, str]] = {
    "oniceconnectionstatechange": "ice",
    "onconnectionstatechange": "connection",
    "onsignalingstatechange": "signaling",
    "onicegatheringstatechange": "gathering",
    "ondtlsstatechange": "dtls",
}
CHAINS: Final = ("ice", "connection", "dtls", "signaling", "gathering")
#: States kept per chain (a flapping connection: the first ones, then a count).
MAX_CHAIN: Final = 40
#: Candidate pairs kept in the grid.
MAX_PAIRS: Final = 64
#: Lines of a munged description's difference that are kept.
MAX_DIFF_LINES: Final = 40
#: Munged descriptions listed per connection (a renegotiating call munges each one).
MAX_MUNGED: Final = 20
_CONNECTED: Final = frozenset({"connected", "completed"})
_CREATED: Final = {"createOfferOnSuccess": "offer", "createAnswerOnSuccess": "answer"}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _address(candidate: Report | None) -> str | None:
    if candidate is None:
        return None
    address = _text(candidate.get("address")) or _text(candidate.get("ip"))
    if address is None:
        address = _text(candidate.get("ipAddress"))  # pre-standard
    port = _number(candidate.get("port") or candidate.get("portNumber"))
    if address is None:
        return None
    masked = mask_text(address)
    return f"{masked}:{int(port)}" if port is not None else masked


def _candidate(reports: Result, pair: Report, key: str) -> Report | None:
    linked = pair.get(key)
    found = reports.get(linked) if isinstance(linked, str) else None
    return found if isinstance(found, dict) else None


def sdp_of(value: object) -> tuple[str | None, str | None]:
    """(type, sdp) of a description value; (None, None) for anything else."""
    if isinstance(value, dict) and isinstance(value.get("sdp"), str):
        kind = value.get("type")
        return (kind if isinstance(kind, str) else None), value["sdp"]
    return None, None


def _lines(sdp: str) -> list[str]:
    return [line.strip() for line in sdp.strip().splitlines() if line.strip()]


def sdp_difference(before: str, after: str) -> list[str]:
    """The lines only one of two descriptions has (``-`` created, ``+`` set), in order;
    at most ``MAX_DIFF_LINES``."""
    old, new = _lines(before), _lines(after)
    old_set, new_set = set(old), set(new)
    out = [f"- {line}" for line in old if line not in new_set]
    out += [f"+ {line}" for line in new if line not in old_set]
    return out[:MAX_DIFF_LINES]


class ConnectionCard:
    """One connection's card, built event by event; ``result()`` is JSON-ready."""

    __slots__ = ("chains", "created", "first", "munged", "omitted", "pair", "pairs")

    def __init__(self) -> None:
        self.chains: dict[str, list[list[Any]]] = {}
        self.omitted: dict[str, int] = {}
        self.first: float | None = None
        self.created: dict[str, str] = {}
        self.munged: list[dict[str, Any]] = []
        self.pair: dict[str, Any] | None = None
        self.pairs: dict[str, dict[str, Any]] = {}

    def _state(self, chain: str, t: float, state: object) -> None:
        if not isinstance(state, str):
            return
        states = self.chains.setdefault(chain, [])
        if states and states[-1][1] == state:
            return
        if len(states) >= MAX_CHAIN:
            self.omitted[chain] = self.omitted.get(chain, 0) + 1
            return
        states.append([t, state])

    def event(self, event: Event) -> None:
        t, method = event.timestamp, event.method
        if t > 0 and (self.first is None or t < self.first):
            self.first = t
        chain = STATE_METHODS.get(method)
        if chain is not None:
            self._state(chain, t, event.value)
            return
        created = _CREATED.get(method)
        if created is not None:
            _, sdp = sdp_of(event.value)
            if sdp is not None:
                self.created[created] = sdp
            return
        if method == "setLocalDescription":
            kind, sdp = sdp_of(event.value)
            made = self.created.get(kind or "")
            if (
                sdp
                and made is not None
                and len(self.munged) < MAX_MUNGED
                and _lines(sdp) != _lines(made)
            ):
                self.munged.append({"t": t, "type": kind, "difference": sdp_difference(made, sdp)})

    def stats(self, read: StatsRead) -> None:
        transport = read.transport
        if transport is not None:
            if transport.dtls_state is not None:
                self._state("dtls", read.t, transport.dtls_state)
            selected = transport.pair
            if selected is not None and (self.pair is None or transport.new_pair):
                self.pair = {
                    "id": selected.id,
                    "since": read.t,
                    "local_type": selected.local_type,
                    "remote_type": selected.remote_type,
                    "protocol": selected.protocol,
                    "relay_protocol": selected.relay_protocol,
                    "network_type": selected.network_type,
                    "local_address": _address(selected.local),
                    "remote_address": _address(selected.remote),
                }
        reports = read.reports
        for pair_id in read.ids.pairs:
            pair = reports.get(pair_id)
            if not isinstance(pair, dict):
                continue
            row = self.pairs.get(pair_id)
            if row is None:
                if len(self.pairs) >= MAX_PAIRS:
                    continue
                local = _candidate(reports, pair, "localCandidateId")
                remote = _candidate(reports, pair, "remoteCandidateId")
                row = self.pairs[pair_id] = {
                    "id": pair_id,
                    "local": _describe(local, pair.get("googLocalCandidateType")),
                    "remote": _describe(remote, pair.get("googRemoteCandidateType")),
                }
            rtt = _number(pair.get("currentRoundTripTime"))
            row.update(
                state=_text(pair.get("state")) or row.get("state"),
                nominated=pair.get("nominated") is True or row.get("nominated", False),
                requests_sent=_number(pair.get("requestsSent")),
                responses_received=_number(pair.get("responsesReceived")),
                requests_received=_number(pair.get("requestsReceived")),
                responses_sent=_number(pair.get("responsesSent")),
                rtt_ms=rtt * 1000 if rtt is not None else row.get("rtt_ms"),
                bytes_sent=_number(pair.get("bytesSent")),
                bytes_received=_number(pair.get("bytesReceived")),
            )

    def result(self) -> dict[str, Any]:
        connected = None
        for chain in ("connection", "ice"):
            chain_states = self.chains.get(chain, [])
            moment = next((t for t, s in chain_states if s in _CONNECTED and t > 0), None)
            if moment is not None:
                connected = moment
                break
        selected = self.pair["id"] if self.pair is not None else None
        return {
            "chains": {name: self.chains[name] for name in CHAINS if name in self.chains},
            "chains_omitted": self.omitted,
            "time_to_connect_ms": (
                round(connected - self.first, 1)
                if connected is not None and self.first is not None
                else None
            ),
            "selected_pair": self.pair,
            "pairs": sorted(
                self.pairs.values(),
                key=lambda row: (row["id"] != selected, -(row.get("bytes_received") or 0)),
            ),
            "munged": self.munged,
        }


def _describe(candidate: Report | None, legacy_type: object) -> str:
    """``type protocol address`` of a candidate (masked), as one cell of the grid."""
    if candidate is None:
        return _text(legacy_type) or "?"
    parts = [
        _text(candidate.get("candidateType")) or "?",
        _text(candidate.get("protocol") or candidate.get("transport")) or "",
        _address(candidate) or "",
    ]
    relay = _text(candidate.get("relayProtocol"))
    if relay:
        parts.append(f"(relay {relay})")
    return " ".join(part for part in parts if part)
