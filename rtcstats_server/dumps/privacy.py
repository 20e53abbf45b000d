"""IP address masking of dump lines and client addresses (``privacy.obfuscate_ip_addresses``).

The ingest path carries ~100k messages per second and almost none of them hold an
address, so a line is only parsed when its method is one that can: ICE candidates,
SDP offers and answers, the few once-per-session objects (``create``'s ICE servers,
identity), and getStats reports whose text names an address property. Everything
else costs one method lookup. A masked line is re-encoded; an untouched one stays
byte-for-byte.

Addresses become ``x.x.x.x`` / ``x:x:x:x:x:x:x:x`` (the family stays visible, as in
the jitsi client's obfuscator), relay candidates included: a dump that leaves the
server must not identify anyone. The unspecified addresses (``0.0.0.0``, ``::``) say
nothing and stay. The client's own address keeps its network (/24, /48) so an operator
can still tell networks apart.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final

import orjson

from rtcstats_server.dumps.codes import METHODS, STAT_PROPERTY_CODES

MASKED_V4: Final = "x.x.x.x"
MASKED_V6: Final = "x:x:x:x:x:x:x:x"

#: Dotted quads not glued to a longer number or word, nor part of ``Chrome/140.0.0.0``.
_V4 = re.compile(r"(?<![\w.])(?<![A-Za-z]/)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![\w.])")
#: Colon groups, optionally ending in a dotted quad or a zone; validated before masking.
_V6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{0,4})"
    r"(?:%[\w.-]+)?(?![\w:])"
)

#: Methods whose value may hold an address anywhere (rare messages: parsed whole).
_WHOLE_NAMES: Final = frozenset(
    {
        "onicecandidate",
        "addIceCandidate",
        "addIceCandidateOnFailure",
        "onicecandidateerror",
        "createOfferOnSuccess",
        "createAnswerOnSuccess",
        "setLocalDescription",
        "setRemoteDescription",
        "setLocalDescriptionOnFailure",
        "setRemoteDescriptionOnFailure",
        "create",
        "setConfiguration",
        "identity",
        "connectionInfo",
    }
)
_STATS_NAMES: Final = frozenset({"getStats", "getstats"})


def _codes_for(names: frozenset[str]) -> frozenset[str]:
    """The names plus every rtcstats-js method code (as text) that stands for one."""
    return names | {str(code) for code, name in METHODS.items() if name in names}


WHOLE_METHODS: Final = _codes_for(_WHOLE_NAMES)
STATS_METHODS: Final = _codes_for(_STATS_NAMES)

#: A getStats message is parsed only when its text can hold an address. With full
#: names, a candidate report carries its type (``local-candidate``, legacy
#: ``localcandidate``...) whenever it carries an address (the delta schemes drop
#: unchanged properties, and a candidate's address never changes); legacy
#: ``googCandidatePair`` reports name ``googLocalAddress``. rtcstats-js sends
#: ``address`` as a property code (relatedAddress and url only come beside it). A
#: substring scan costs about 0.4 ns per byte, a tenth of parsing the message.
FULL_NAME_MARKERS: Final = ('candidate"', 'ddress"')
CODED_MARKER: Final = f'"{STAT_PROPERTY_CODES["address"]}"'
CODED_STATS_METHODS: Final = frozenset(
    str(code) for code, name in METHODS.items() if name in _STATS_NAMES
)


def _mask_v4(match: re.Match[str]) -> str:
    text = match.group()
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        return text
    return text if address.is_unspecified else MASKED_V4


def _mask_v6(match: re.Match[str]) -> str:
    text = match.group()
    try:
        address = ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return text
    return text if address.is_unspecified else MASKED_V6


#: SDP lines that can carry an address. An offer is ~6 KB of mostly codecs and
#: fingerprints; scanning only these lines makes masking it ~10x cheaper.
_SDP_ADDRESS_LINES: Final = ("c=", "o=", "a=candidate", "a=rtcp:", "a=remote-candidates")


def _mask_plain(text: str) -> str:
    if "." in text:
        text = _V4.sub(_mask_v4, text)
    if ":" in text:
        text = _V6.sub(_mask_v6, text)
    return text


def _mask_sdp(text: str) -> str:
    lines = text.split("\n")
    changed = False
    for index, line in enumerate(lines):
        if line.startswith(_SDP_ADDRESS_LINES):
            masked = _mask_plain(line)
            if masked != line:
                lines[index] = masked
                changed = True
    return "\n".join(lines) if changed else text


def mask_text(text: str) -> str:
    """Every IPv4/IPv6 literal in ``text`` masked (the unspecified ones kept)."""
    if text.startswith("v=0") and "\n" in text:
        return _mask_sdp(text)
    return _mask_plain(text)


def _walk(value: Any) -> tuple[Any, bool]:
    """``value`` with every string masked, and whether anything changed."""
    if type(value) is str:
        # An address needs a dot or a colon; most strings (ids, codec names) have neither.
        masked = mask_text(value) if ("." in value or ":" in value) else value
        return masked, masked != value
    if type(value) is list:
        changed = False
        for index, item in enumerate(value):
            new, hit = _walk(item)
            if hit:
                value[index] = new
                changed = True
        return value, changed
    if type(value) is dict:
        changed = False
        for key, item in value.items():
            new, hit = _walk(item)
            if hit:
                value[key] = new
                changed = True
        return value, changed
    return value, False


def _method(text: str) -> str | None:
    """The first array element of a dump line as text (a name or a code), cheaply."""
    if len(text) < 3 or text[0] != "[":
        return None
    if text[1] == '"':
        end = text.find('"', 2, 64)
        return text[2:end] if end > 0 else None
    end = text.find(",", 1, 16)
    return text[1:end].strip() if end > 0 else None


def mask_line(text: str) -> str | None:
    """The masked dump line, or None when ``text`` holds no address to mask."""
    method = _method(text)
    if method is None:
        return None
    if method in STATS_METHODS:
        if method in CODED_STATS_METHODS:
            if CODED_MARKER not in text:
                return None
        elif FULL_NAME_MARKERS[0] not in text and FULL_NAME_MARKERS[1] not in text:
            return None
    elif method not in WHOLE_METHODS:
        return None
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None  # not JSON: the decoders refuse it before it gets here
    masked, changed = _walk(parsed)
    return orjson.dumps(masked).decode() if changed else None


def mask_remote(remote: str) -> str:
    """A client address cut to its network: ``203.0.113.x``, ``2001:db8:1:x:x:x:x:x``."""
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return mask_text(remote)
    if isinstance(address, ipaddress.IPv4Address):
        return ".".join(str(address).split(".")[:3]) + ".x"
    groups = address.exploded.split(":")[:3]
    return ":".join(group.lstrip("0") or "0" for group in groups) + ":x:x:x:x:x"
