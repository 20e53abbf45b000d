"""The HTTP request that opens a websocket, read from the first bytes of a connection.

Only what an upgrade needs: the request line, the header fields, nothing after the
blank line. Anything this reader does not take as a well-formed websocket upgrade
(another method, HTTP/1.0, a malformed line, a head over the limit) is not refused
here: ``UpgradeRequest.parse`` says None and the connection goes to the HTTP server
(``http/front.py``), whose own parser gives the answer it gives any bad request.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl

#: RFC 6455 4.2.2: the key's digest is taken with this GUID appended.
_WEBSOCKET_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: ``name: value``; the name a token (RFC 9110 5.1), no space before the colon.
_FIELD: Final = re.compile(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$")
_REQUEST_LINE: Final = re.compile(rb"^GET (\S+) HTTP/1\.1$")
#: The upgrade's answers. Status texts for the refusals the handler gives.
_REASONS: Final = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """A websocket upgrade as the client sent it."""

    #: The request target as sent (still percent-encoded), query included.
    raw_path: str
    #: Header fields by lower-case name; repeated fields joined with ", ".
    headers: dict[str, str]
    #: The TCP peer's address ("" on a Unix socket).
    remote: str
    #: It came over a Unix socket: a sibling worker relayed it (http/relay.py).
    via_unix: bool = False

    @staticmethod
    def parse(head: bytes, remote: str, via_unix: bool = False) -> UpgradeRequest | None:
        """``head``: the bytes before the blank line. None: not a websocket upgrade we
        take (the HTTP server answers it)."""
        lines = head.split(b"\r\n")
        line = _REQUEST_LINE.match(lines[0])
        if line is None:
            return None
        headers: dict[str, str] = {}
        for raw in lines[1:]:
            field = _FIELD.match(raw)
            if field is None:
                return None  # folded or malformed: the HTTP server's parser says what
            # Latin-1 keeps every byte; header_text() in the handler makes stored text.
            name = field.group(1).decode("ascii").lower()
            value = field.group(2).decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if "websocket" not in _tokens(headers.get("upgrade", "")):
            return None
        if "upgrade" not in _tokens(headers.get("connection", "")):
            return None
        key = headers.get("sec-websocket-key", "")
        if headers.get("sec-websocket-version") != "13" or len(_decoded_key(key)) != 16:
            return None
        return UpgradeRequest(line.group(1).decode("latin-1"), headers, remote, via_unix)

    def query(self) -> dict[str, str]:
        """Query parameters, decoded; the first of a repeated name wins."""
        found: dict[str, str] = {}
        for name, value in parse_qsl(self.raw_path.partition("?")[2], keep_blank_values=True):
            found.setdefault(name, value)
        return found

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def deflate_offer(self) -> dict[str, str | None] | None:
        """The client's first ``permessage-deflate`` offer's parameters, if it made one."""
        for offer in self.header("Sec-WebSocket-Extensions").split(","):
            name, *params = (part.strip() for part in offer.split(";"))
            if name.lower() != "permessage-deflate":
                continue
            parsed: dict[str, str | None] = {}
            for param in params:
                key, eq, value = param.partition("=")
                parsed[key.strip().lower()] = value.strip().strip('"') if eq else None
            return parsed
        return None


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def _decoded_key(key: str) -> bytes:
    try:
        return base64.b64decode(key.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        return b""


def deflate_answer(offer: dict[str, str | None]) -> str | None:
    """Our ``Sec-WebSocket-Extensions`` answer to an offer; None: we decline it.

    We inflate with the largest window, which reads any window the client chose, and
    never compress our own frames; so only the parameters about our side are echoed
    (RFC 7692 7.1: a server must answer them) and the client keeps its settings.
    """
    known = {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
    if not set(offer) <= known:
        return None
    answer = ["permessage-deflate"]
    if "server_no_context_takeover" in offer:
        answer.append("server_no_context_takeover")
    bits = offer.get("server_max_window_bits", "")
    if bits:
        if not bits.isdigit() or not 8 <= int(bits) <= 15:
            return None
        answer.append(f"server_max_window_bits={bits}")
    return "; ".join(answer)


def switching(
    request: UpgradeRequest,
    subprotocol: str | None,
    extension: str | None,
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """The 101 answer that opens the websocket."""
    digest = hashlib.sha1(request.header("Sec-WebSocket-Key").encode() + _WEBSOCKET_GUID)
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Accept: " + base64.b64encode(digest.digest()).decode(),
    ]
    if subprotocol:
        lines.append("Sec-WebSocket-Protocol: " + subprotocol)
    if extension:
        lines.append("Sec-WebSocket-Extensions: " + extension)
    lines.extend(f"{name}: {value}" for name, value in extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def refusal(status: int, text: str, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A plain-text refusal of the upgrade; the connection closes after it."""
    body = (text + "\n").encode()
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in extra),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
