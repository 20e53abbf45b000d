"""RFC 6455 frames, without sockets: what a client sent, and what we send back.

The collector's own websocket framing, because a message's trip through a general
websocket server (a message queue, a future per read, a task woken per message) cost
more than the frame itself: here a parsed message is handed to its session in the same
call that read it from the socket. It does only what ingest needs: client frames are
masked text (binary is refused by the handler), messages may be fragmented, control
frames come in between, and ``permessage-deflate`` (RFC 7692) is read when the config
offers it. We never compress what we send: acknowledgements are a few bytes.

Every limit is checked before the bytes it limits are kept: a frame that says it is
larger than ``max_message_bytes`` is refused from its header, and an inflated message
is cut at the same size, so a small frame cannot unpack into a large one.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

try:  # the C unmasking of the websockets package (a dependency already)
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - its wheels ship the extension
    from websockets.utils import apply_mask

#: Opcodes (RFC 6455 5.2).
CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA

#: Close codes a peer may send (RFC 6455 7.4.1; 1004-1006 and 1015 are never on the wire).
_SENDABLE_CODES: Final = frozenset(range(1000, 1004)) | frozenset(range(1007, 1015))

_DEFLATE_TAIL: Final = b"\x00\x00\xff\xff"
#: A frame larger than this that arrives in parts is joined once, when whole.
_JOIN_LATER: Final = 64 * 1024
_U16: Final = struct.Struct("!H")
_U64: Final = struct.Struct("!Q")


class FrameError(Exception):
    """The client broke the protocol; ``code`` is the close code that answers it."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def _payload_length(buf: bytes, pos: int) -> tuple[int, int] | None:
    """The payload length of the frame at ``pos`` (at least two bytes of it are in
    ``buf``) and where its masking key starts; None while the length is not whole.
    Nothing is judged here: ``take`` refuses what RFC 6455 forbids."""
    length = buf[pos + 1] & 0x7F
    if length == 126:
        return (_U16.unpack_from(buf, pos + 2)[0], pos + 4) if len(buf) - pos >= 4 else None
    if length == 127:
        return (_U64.unpack_from(buf, pos + 2)[0], pos + 10) if len(buf) - pos >= 10 else None
    return length, pos + 2


def _frame_size(head: bytes) -> int:
    """The whole size of the frame that ``head`` begins (header, mask, payload), or
    0 while its header is not whole."""
    found = _payload_length(head, 0) if len(head) >= 2 else None
    return 0 if found is None else found[1] + 4 + found[0]


def valid_close_code(code: int) -> bool:
    return code in _SENDABLE_CODES or 3000 <= code <= 4999


def close_payload(payload: bytes) -> tuple[int, str]:
    """The code and reason of a close frame's payload (1005: it had none)."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise FrameError(1002, "close frame with a one-byte payload")
    code = _U16.unpack_from(payload)[0]
    if not valid_close_code(code):
        raise FrameError(1002, f"close code {code} is not one a peer may send")
    try:
        return code, payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(1007, "close reason is not UTF-8") from None


class Inflater:
    """``permessage-deflate`` for one connection: each message inflated, at most
    ``limit`` bytes (a deflate bomb stops there)."""

    __slots__ = ("_inflate", "_reset", "limit")

    def __init__(self, limit: int, reset_each_message: bool) -> None:
        self.limit = limit
        self._reset = reset_each_message
        self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)

    def inflate(self, data: bytes) -> bytes:
        if self._reset:
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            out = self._inflate.decompress(data + _DEFLATE_TAIL, self.limit + 1)
        except zlib.error:
            raise FrameError(1007, "compressed message is not valid deflate data") from None
        if len(out) > self.limit or self._inflate.unconsumed_tail:
            raise FrameError(1009, "message is larger than max_message_bytes when inflated")
        return out


class FrameReader:
    """Bytes from the client in, whole messages out.

    ``take`` returns ``(opcode, payload)`` for the next complete text or binary message
    (fragments joined, inflated) or control frame, or None when more bytes are needed;
    a text payload is a ``str``, any other ``bytes``. It raises ``FrameError`` with the
    close code for anything RFC 6455 forbids or our limits refuse.
    """

    __slots__ = (
        "_buf",
        "_fragments",
        "_fragments_size",
        "_message_opcode",
        "_need",
        "_next",
        "_next_pos",
        "_pending",
        "_pending_size",
        "_pos",
        "_rsv1",
        "inflater",
        "max_message_bytes",
    )

    def __init__(self, max_message_bytes: int, inflater: Inflater | None = None) -> None:
        self.max_message_bytes = max_message_bytes
        self.inflater = inflater
        self._buf = b""
        self._pos = 0
        #: A read whose first frame began in the read before: ``_buf`` then holds just
        #: that frame, joined, and reading goes on here from ``_next_pos``.
        self._next: bytes | None = None
        self._next_pos = 0
        #: The parts of a large frame still arriving: joined once it is whole, not
        #: copied again with every part (``_need`` bytes in all).
        self._pending: list[bytes] | None = None
        self._pending_size = 0
        self._need = 0
        #: A fragmented message being joined: its opcode, parts, size, compressed?
        self._message_opcode = -1
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._rsv1 = False

    def feed(self, data: bytes) -> None:
        """Keep ``data`` for ``take``.

        A read mostly ends inside a frame. Joining that frame's start to the whole
        next read copied every byte received once more (a read is up to 256 KiB
        under load; ``feed`` was 3.8 % of the compiled server's CPU on the 3.1 load),
        so only the frame that straddles the two reads is joined, and the rest of
        the read is parsed where it lies.
        """
        if self._next is not None:  # the last read is not taken yet: keep one buffer
            self._buf = self._buf[self._pos :] + self._next[self._next_pos :]
            self._pos = 0
            self._next = None
        pending = self._pending
        if pending is not None:
            pending.append(data)
            self._pending_size += len(data)
            if self._pending_size >= self._need:
                self._buf = b"".join(pending)
                self._pos = 0
                self._pending = None
                self._pending_size = 0
            return
        if self._pos >= len(self._buf):
            self._buf = data
            self._pos = 0
            return
        left = self._buf[self._pos :]
        self._pos = 0
        missing = _frame_size(left) - len(left)
        if 0 < missing < len(data):
            self._buf = left + data[:missing]
            self._next = data
            self._next_pos = missing
        else:  # its header is not whole yet, or the frame goes on past this read
            self._buf = left + data

    def discard(self) -> None:
        """Let go of every byte held (the connection is gone; the reader may outlive it)."""
        self._buf = b""
        self._pos = 0
        self._next = None
        self._pending = None
        self._pending_size = 0
        self._fragments = []
        self._fragments_size = 0
        self._message_opcode = -1

    def take(self) -> tuple[int, str | bytes] | None:
        while True:
            if self._pending is not None:
                return None
            buf = self._buf
            pos = self._pos
            available = len(buf) - pos
            if available < 2:
                if self._next is None:
                    return None
                if available:  # not a whole frame: cannot be, ``feed`` joined one
                    self._next = b"".join((buf[pos:], self._next[self._next_pos :]))
                    self._next_pos = 0
                buf = self._buf = self._next
                pos = self._pos = self._next_pos
                self._next = None
                continue
            first = buf[pos]
            second = buf[pos + 1]
            if not second & 0x80:
                raise FrameError(1002, "client frames must be masked")
            found = _payload_length(buf, pos)
            if found is None:
                return None
            length, start = found
            if length >> 63:
                raise FrameError(1002, "frame length has its top bit set")
            opcode = first & 0x0F
            fin = first & 0x80
            rsv = first & 0x70
            if opcode >= 0x8:
                if not fin or length > 125:
                    raise FrameError(1002, "control frames are short and not fragmented")
                if rsv:
                    raise FrameError(1002, "reserved bits set on a control frame")
            else:
                if rsv & 0x30 or (rsv and (self.inflater is None or opcode == CONTINUATION)):
                    raise FrameError(1002, "reserved bits set that no extension defines")
                if length + self._fragments_size > self.max_message_bytes:
                    raise FrameError(1009, "message is larger than max_message_bytes")
            end = start + 4 + length
            if len(buf) < end:
                if end - pos > _JOIN_LATER:
                    self._pending = [buf[pos:]]
                    self._pending_size = len(buf) - pos
                    self._need = end - pos
                    self._buf = b""
                    self._pos = 0
                return None
            payload = apply_mask(buf[start + 4 : end], buf[start : start + 4]) if length else b""
            self._pos = end
            if opcode == TEXT or opcode == BINARY:
                if self._message_opcode >= 0:
                    raise FrameError(1002, "a new message began before the last one ended")
                if fin:
                    return self._message(opcode, payload, bool(rsv))
                self._message_opcode = opcode
                self._rsv1 = bool(rsv)
                self._fragments = [payload]
                self._fragments_size = length
            elif opcode == CONTINUATION:
                if self._message_opcode < 0:
                    raise FrameError(1002, "continuation frame without a message")
                self._fragments.append(payload)
                self._fragments_size += length
                if fin:
                    opcode, self._message_opcode = self._message_opcode, -1
                    whole = b"".join(self._fragments)
                    self._fragments = []
                    self._fragments_size = 0
                    return self._message(opcode, whole, self._rsv1)
            elif opcode in (CLOSE, PING, PONG):
                return opcode, payload
            else:
                raise FrameError(1002, f"unknown opcode {opcode}")

    def _message(self, opcode: int, payload: bytes, compressed: bool) -> tuple[int, str | bytes]:
        if compressed:
            assert self.inflater is not None  # checked with the frame's reserved bits
            payload = self.inflater.inflate(payload)
        if opcode == TEXT:
            try:
                return TEXT, payload.decode()
            except UnicodeDecodeError:
                raise FrameError(1007, "text message is not UTF-8") from None
        return opcode, payload


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame (a server's)."""
    length = len(payload)
    if length < 126:
        head = bytes((0x80 | opcode, length))
    elif length < 1 << 16:
        head = bytes((0x80 | opcode, 126)) + _U16.pack(length)
    else:
        head = bytes((0x80 | opcode, 127)) + _U64.pack(length)
    return head + payload


def text_frame(text: str) -> bytes:
    return frame(TEXT, text.encode())


def close_frame(code: int, reason: bytes = b"") -> bytes:
    """A close frame; the reason is cut to what fits a control frame."""
    return frame(CLOSE, _U16.pack(code) + reason[:123])
