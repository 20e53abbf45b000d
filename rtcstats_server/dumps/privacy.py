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
#: The one marker of W3C stats (``standard_stats``): their candidate reports are typed
#: ``local-candidate`` or ``remote-candidate``, and no other report holds an address
#: (``address``, ``relatedAddress``, ``url``); ``ddress"`` only adds the legacy
#: ``googCandidatePair``'s ``googLocalAddress``.
STANDARD_MARKER: Final = '-candidate"'
#: Dashes ``_names_standard_candidate`` looks behind one by one before it scans for the
#: marker instead: a getStats line of the jitsi capture holds 0 to 9 after the first.
_DASHES_TRIED: Final = 8


#: Verdicts on address-like texts seen before (the same candidates come back in every
#: getStats): ``ipaddress`` costs microseconds, a dict lookup tens of nanoseconds.
#: Cleared when full, so a client cannot grow it without bound.
_VERDICTS: dict[str, str] = {}
_VERDICTS_MAX: Final = 4096


def _verdict(text: str, family: type[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> str:
    """``text`` as it is to be stored: masked when it is a specified address."""
    try:
        address = family(text.split("%", 1)[0])
    except ValueError:
        result = text
    else:
        if address.is_unspecified:
            result = text
        else:
            result = MASKED_V4 if family is ipaddress.IPv4Address else MASKED_V6
    if len(_VERDICTS) >= _VERDICTS_MAX:
        _VERDICTS.clear()
    _VERDICTS[text] = result
    return result


def _mask_v4(match: re.Match[str]) -> str:
    text = match.group()
    known = _VERDICTS.get(text)
    return known if known is not None else _verdict(text, ipaddress.IPv4Address)


def _mask_v6(match: re.Match[str]) -> str:
    text = match.group()
    known = _VERDICTS.get(text)
    return known if known is not None else _verdict(text, ipaddress.IPv6Address)


#: SDP lines that can carry an address. An offer is ~6 KB of mostly codecs and
#: fingerprints; scanning only these lines makes masking it ~10x cheaper. Found by a
#: pattern led by the newline (``re`` skips to each at memchr speed): looking at
#: each of an offer's ~160 lines in Python cost 5 times as much.
_SDP_ADDRESS_LINES: Final = ("c=", "o=", "a=candidate", "a=rtcp:", "a=remote-candidates")
_SDP_ADDRESS_LINE = re.compile(
    r"\n(?:" + "|".join(re.escape(prefix) for prefix in _SDP_ADDRESS_LINES) + r")[^\n]*"
)


#: Texts shorter than this are cheaper to scan with the full patterns than to look
#: for hints in (an SDP candidate line, an ICE server's url).
_HINTED_FROM: Final = 600


def _mask_plain(text: str) -> str:
    """Every address in ``text`` masked: ``mask_plain_reference``, found faster."""
    if len(text) < _HINTED_FROM:
        return mask_plain_reference(text)
    return _mask_hinted(text, _V4, _V6)


def mask_plain_reference(text: str) -> str:
    """What masking a text means: both patterns tried at every position, dotted quads
    first. The tests hold ``_mask_hinted`` to it; it costs about 40 ns per character."""
    if "." in text:
        text = _V4.sub(_mask_v4, text)
    if ":" in text:
        text = _V6.sub(_mask_v6, text)
    return text


def _mask_sdp(text: str) -> str:
    """``text`` (an SDP: its first line is ``v=0``) with the address lines masked."""
    return _SDP_ADDRESS_LINE.sub(_mask_sdp_line, text)


#: SDP address lines masked before. The same lines come back: every m-section of a
#: Chrome SDP holds ``c=IN IP4 0.0.0.0`` and ``a=rtcp:9 IN IP4 0.0.0.0``, each offer
#: and answer of a connection its ``o=`` line, and its candidates come again in later
#: descriptions. Masking a short line costs about 1.4 µs, a lookup tens of
#: nanoseconds. Bounded like ``_VERDICTS``; long lines are not kept.
_SDP_LINES: dict[str, str] = {}
_SDP_LINES_MAX: Final = 4096
_SDP_LINE_KEPT_BELOW: Final = 256


def _mask_sdp_line(match: re.Match[str]) -> str:
    line = match.group()
    known = _SDP_LINES.get(line)
    if known is not None:
        return known
    masked = _mask_plain(line)
    if len(line) < _SDP_LINE_KEPT_BELOW:
        if len(_SDP_LINES) >= _SDP_LINES_MAX:
            _SDP_LINES.clear()
        _SDP_LINES[line] = masked
    return masked


def mask_text(text: str) -> str:
    """Every IPv4/IPv6 literal in ``text`` masked (the unspecified ones kept)."""
    if text.startswith("v=0") and "\n" in text:
        return _mask_sdp(text)
    return _mask_plain(text)


#: The same patterns for the raw text of a JSON line whose only escapes are ``\r``,
#: ``\n``, ``\t`` and ``\"`` (``_plain_escapes``): where the decoded string has a
#: control character before an address, the raw text has the escape's letter, which
#: the plain lookbehinds would take for part of a word.
_RAW_V4 = re.compile(
    r"(?:(?<![\w.])|(?<=\\[rnt]))(?:(?<![A-Za-z]/)|(?<=\\[rnt]/))"
    r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![\w.])"
)
_RAW_V6 = re.compile(r"(?:(?<![\w:.])|(?<=\\[rnt]))" + _V6.pattern[len(r"(?<![\w:.])") :])
#: Parts of every address the patterns take, led by a literal so that ``re`` skips
#: to them at memchr speed: a dotted quad holds ``.d.d.``, a colon address ``:h:``.
#: Scanning a 2 KB getStats line for them costs about 1 and 5 µs; the full patterns,
#: tried at every position, about 80 and 100.
_V4_HINT = re.compile(r"\.[0-9]{1,3}\.[0-9]{1,3}\.")
_V6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")
#: ASCII characters of a cluster: what an address, its zone and the words glued to
#: them are made of (``[\w:.%-]``; other word characters end a walk back safely,
#: as no address holds them).
_CLUSTER_ASCII: Final = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:.%-"
)
_CLUSTER_TAIL = re.compile(r"[\w:.%-]*")
#: What can come before a colon address inside a cluster.
_V6_START = re.compile(r"[%-]")
_PLAIN_ESCAPES: Final = ("\\r", "\\n", "\\t", '\\"')


def _plain_escapes(text: str) -> bool:
    """Whether every backslash of ``text`` starts a ``\r``, ``\n``, ``\t`` or ``\"``.

    Then a raw match is a decoded one: no escape hides a character of an address
    (``\u0031``), puts a hex letter before one (``\f``, ``\b``) or is ambiguous
    (``\\n`` is a backslash and an ``n``).
    """
    backslashes = text.count("\\")
    return backslashes == 0 or backslashes == sum(text.count(e) for e in _PLAIN_ESCAPES)


def _cluster_start(text: str, index: int) -> int:
    """Where the cluster around ``index`` starts: back over cluster characters, and
    not past an escape's letter (``\n`` before an address is a newline)."""
    while index > 0 and text[index - 1] in _CLUSTER_ASCII:
        if index > 1 and text[index - 2] == "\\" and text[index - 1] in "rnt":
            break  # in decoded text an address never holds an r, n or t: stopping is safe
        index -= 1
    return index


def _sub_from(pattern: re.Pattern[str], replace: Any, text: str, start: int) -> str:
    """``pattern.sub(replace, text)`` for matches that start at ``start`` or later
    (what comes before is context for the lookbehinds only)."""
    pieces: list[str] = []
    last = 0
    for match in pattern.finditer(text, start):
        pieces.append(text[last : match.start()])
        pieces.append(replace(match))
        last = match.end()
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def _mask_cluster(local: str, offset: int, v4: re.Pattern[str], v6: re.Pattern[str]) -> str:
    """``_mask_plain`` on the cluster ``local[offset:]`` (``local`` holds three
    characters of context before it and one after, for the lookarounds).

    Colon addresses are tried only where one can start: at the cluster's start or
    after a ``%`` or ``-`` (everywhere else the lookbehind sees a word character, a
    colon or a dot), which saves trying the pattern at every position of a 95
    character fingerprint.
    """
    masked = _sub_from(v4, _mask_v4, local, offset) if "." in local else local
    if ":" not in masked:
        return masked
    pieces: list[str] = []
    last = 0
    starts = [offset]
    if "%" in masked or "-" in masked:
        starts.extend(found.end() for found in _V6_START.finditer(masked, offset))
    for start in starts:
        match = v6.match(masked, start) if start >= last else None
        if match is not None:
            pieces.append(masked[last:start])
            pieces.append(_mask_v6(match))
            last = match.end()
    if not pieces:
        return masked
    pieces.append(masked[last:])
    return "".join(pieces)


def _holds_no_address(cluster: str) -> bool:
    r"""A cluster no pattern can match in, cheaply told: a certificate fingerprint
    (``2F:F6:...``, 31 colons; a getStats line of a new connection holds several).

    Without a dot there is no dotted quad. Without ``%`` or ``-`` a colon address
    can only start at the cluster's start, and every character of the cluster is a
    word character or a colon, so ``(?![\w:])`` lets it end only at the cluster's
    end: the whole cluster would be the address, and no address has more than
    seven colons.
    """
    return (
        cluster.count(":") > 7 and "." not in cluster and "%" not in cluster and "-" not in cluster
    )


def _mask_raw(text: str) -> str:
    """``text`` (a JSON line with plain escapes, no SDP) with every address masked that
    ``_walk`` would mask in its decoded strings, without decoding it.

    Nothing outside a JSON string can match: JSON numbers hold one dot and no colon,
    and a quote ends every cluster. Unlike ``_walk`` this also masks an address in an
    object key, which no client sends.
    """
    return _mask_hinted(text, _RAW_V4, _RAW_V6)


def _mask_hinted(text: str, v4_pattern: re.Pattern[str], v6_pattern: re.Pattern[str]) -> str:
    """``text`` with every match of the patterns masked, as ``mask_plain_reference``
    does, without trying them at every position.

    The hints find where an address can be; around each, the cluster of characters
    an address and its zone are made of (every match of the full patterns lies in
    one) is masked with the full patterns, dotted quads first; the search goes on
    after the cluster (a certificate's fingerprint is one cluster with 31 hints).
    """
    pieces: list[str] = []
    done = 0  # text[:done] is in pieces
    changed = False
    size = len(text)
    v4 = _V4_HINT.search(text) if "." in text else None
    v6 = _V6_HINT.search(text)
    while v4 is not None or v6 is not None:
        # Each pattern searches on only from where its last hint lay: searching both
        # from every cluster's end would cost a scan of the rest per cluster.
        if v4 is not None and v4.start() < done:
            v4 = _V4_HINT.search(text, done)
        if v6 is not None and v6.start() < done:
            v6 = _V6_HINT.search(text, done)
        if v4 is None and v6 is None:
            break
        if v6 is None or (v4 is not None and v4.start() < v6.start()):
            hint = v4
        else:
            hint = v6
        assert hint is not None
        start = _cluster_start(text, hint.start())
        end = _CLUSTER_TAIL.match(text, hint.end()).end()  # type: ignore[union-attr]
        if _holds_no_address(text[start:end]):
            pieces.append(text[done:end])
            done = end
            continue
        before = max(0, start - 3)
        after = min(size, end + 1)
        local = text[before:after]
        offset = start - before
        masked = _mask_cluster(local, offset, v4_pattern, v6_pattern)
        if masked != local:
            changed = True
            pieces.append(text[done:start])
            pieces.append(masked[offset : len(masked) - (after - end)])
        else:
            pieces.append(text[done:end])
        done = end
    if not changed:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


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


def _names_standard_candidate(text: str) -> bool:
    """``STANDARD_MARKER in text``, told at memchr speed where it can be.

    Two substring scans for the full-name markers cost about 1.4 µs on a 2 KB getStats
    line (``in`` runs at 0.3 to 0.6 ns per byte on JSON, whose quotes and common
    letters defeat its skips); finding a dash runs at 0.02 ns per byte, and the jitsi
    client's delta-compressed reports hold a few at most (types and track ids are
    sent once). Past ``_DASHES_TRIED`` of them the plain scan takes the rest, so a
    text of dashes costs no more than the scan would.
    """
    index = text.find("-")
    for _ in range(_DASHES_TRIED):
        if index < 0:
            return False
        if text.startswith(STANDARD_MARKER, index):
            return True
        index = text.find("-", index + 1)
    return index >= 0 and text.find(STANDARD_MARKER, index) >= 0


def mask_line(text: str, standard_stats: bool = False) -> str | None:
    """The masked dump line, or None when ``text`` holds no address to mask.

    ``standard_stats``: the client named its getStats reports as the W3C does (the
    jitsi client's ``3.1_STANDARD``), so one marker tells a report that can hold an
    address. A client that says so and sends legacy reports anyway keeps their
    ``googCandidatePair`` addresses: masking protects what honest clients send, as a
    client could spell its addresses any way it likes.
    """
    method = _method(text)
    if method is None:
        return None
    if method in STATS_METHODS:
        if method in CODED_STATS_METHODS:
            if CODED_MARKER not in text:
                return None
        elif standard_stats:
            if not _names_standard_candidate(text):
                return None
        elif FULL_NAME_MARKERS[0] not in text and FULL_NAME_MARKERS[1] not in text:
            return None
    elif method not in WHOLE_METHODS:
        return None
    if '"v=0' not in text and _plain_escapes(text):
        masked = _mask_raw(text)
        return None if masked is text else masked
    return mask_parsed(text)


def mask_parsed(text: str) -> str | None:
    """What ``mask_line`` does for any line: parse it, mask every string value, encode
    it again if one changed. The reference the raw fast path is tested against, and
    the way for lines with SDP or other escapes."""
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
