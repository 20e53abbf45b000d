"""A description split by m-section: what the viewer shows above the raw SDP.

Per ``m=`` line its media kind, ``a=mid``, direction (``sendrecv`` … ``inactive``,
the session-level one when the section has none) and codecs in payload order
(``a=rtpmap``, e.g. ``VP8/90000``; ``rtx``, ``red``, ``ulpfec`` included, they are
what a support engineer compares). Pure and forgiving: any text gives a list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

DIRECTIONS: Final = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})


@dataclass(slots=True)
class MediaSection:
    kind: str
    port: str
    protocol: str
    mid: str | None = None
    direction: str | None = None
    codecs: list[str] = field(default_factory=list)
    #: Payload types of the m= line, the codecs' order.
    payloads: list[str] = field(default_factory=list)


def media_sections(sdp: str) -> list[MediaSection]:
    """The m-sections of a description, in order."""
    sections: list[MediaSection] = []
    session_direction: str | None = None
    names: dict[str, str] = {}
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if sections:
                _order(sections[-1], names)
            names = {}
            parts = line[2:].split(" ")
            sections.append(
                MediaSection(
                    kind=parts[0],
                    port=parts[1] if len(parts) > 1 else "",
                    protocol=parts[2] if len(parts) > 2 else "",
                    payloads=parts[3:],
                )
            )
            continue
        if not line.startswith("a="):
            continue
        attribute = line[2:]
        if attribute in DIRECTIONS:
            if sections:
                sections[-1].direction = attribute
            else:
                session_direction = attribute
        elif not sections:
            continue
        elif attribute.startswith("mid:"):
            sections[-1].mid = attribute[4:]
        elif attribute.startswith("rtpmap:"):
            payload, _, name = attribute[7:].partition(" ")
            names[payload] = name
    if sections:
        _order(sections[-1], names)
    for section in sections:
        if section.direction is None:
            section.direction = session_direction or "sendrecv"
    return sections


def _order(section: MediaSection, names: dict[str, str]) -> None:
    section.codecs = [names[p] for p in section.payloads if p in names]
