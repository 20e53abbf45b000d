"""ICE candidate lines and SDP lines as the feature definitions read them.

A candidate arrives as text (``candidate:702786350 2 udp 41819902 8.8.8.8 60769 typ
relay raddr 8.8.8.8 rport 55996``), in ``onicecandidate`` and ``addIceCandidate``
values and as ``a=candidate:`` lines of a description. The split follows RFC 8839's
grammar the way the ``sdp`` package the peer uses splits it, so both sides see the
same type, address and TCP type in the same string (the protocol lower-cased, numbers
parsed as ``parseInt`` does). Every string here comes from a client: anything that is
not a candidate gives None, never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

#: The longest candidate line read (real ones are under 200 characters).
MAX_CANDIDATE_CHARS: Final = 1024
_LEADING_INT: Final = re.compile(r"\s*([+-]?\d+)")


def parse_int(text: str) -> int | None:
    """``parseInt(text, 10)``: the leading decimal integer, None for NaN."""
    match = _LEADING_INT.match(text)
    return int(match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class Candidate:
    """The parts of one candidate line the features use."""

    foundation: str
    protocol: str
    priority: int | None
    address: str | None
    port: int | None
    type: str | None
    tcp_type: str | None

    @property
    def is_mdns(self) -> bool:
        """A host candidate that hides its address behind an mDNS name."""
        return self.type == "host" and self.address is not None and self.address.endswith(".local")


def parse_candidate(line: object) -> Candidate | None:
    """The candidate a line (``candidate:…`` or ``a=candidate:…``) describes; None for
    anything that is not one (too short, not text, too long)."""
    if type(line) is not str or len(line) > MAX_CANDIDATE_CHARS:
        return None
    body = line[12:] if line.startswith("a=candidate:") else line[10:]
    parts = body.split(" ")
    if len(parts) < 3:
        return None
    tcp_type: str | None = None
    for index in range(8, len(parts) - 1, 2):
        if parts[index] == "tcptype":
            tcp_type = parts[index + 1]
    return Candidate(
        foundation=parts[0],
        protocol=parts[2].lower(),
        priority=parse_int(parts[3]) if len(parts) > 3 else None,
        address=parts[4] if len(parts) > 4 else None,
        port=parse_int(parts[5]) if len(parts) > 5 else None,
        type=parts[7] if len(parts) > 7 else None,
        tcp_type=tcp_type,
    )


def sdp_lines(sdp: str) -> list[str]:
    """A description's lines, each without surrounding white space (CRLF or LF)."""
    return [line.strip() for line in sdp.strip().split("\n")]


def sdp_candidates(sdp: str) -> Iterator[Candidate]:
    """The candidates listed in a description (``a=candidate:`` lines)."""
    for line in sdp_lines(sdp):
        if line.startswith("a=candidate:"):
            candidate = parse_candidate(line)
            if candidate is not None:
                yield candidate
