"""The websocket framing (ingest/frames.py) and the upgrade reader (ingest/upgrade.py),
without sockets: every rule a client can break gets its close code."""

from __future__ import annotations

import os
import random
import struct
import zlib

import pytest

from rtcstats_server.ingest.frames import (
    CLOSE,
    PING,
    TEXT,
    FrameError,
    FrameReader,
    Inflater,
    close_frame,
    close_payload,
    text_frame,
)
from rtcstats_server.ingest.upgrade import UpgradeRequest, deflate_answer, refusal, switching


def client_frame(
    opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    """A frame as a client writes it (masked with a random key)."""
    first = (0x80 if fin else 0) | rsv | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head = bytes((first, mask_bit | length))
    elif length < 1 << 16:
        head = bytes((first, mask_bit | 126)) + struct.pack("!H", length)
    else:
        head = bytes((first, mask_bit | 127)) + struct.pack("!Q", length)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_all(reader: FrameReader, data: bytes, step: int | None = None) -> list[tuple[int, object]]:
    out: list[tuple[int, object]] = []
    chunks = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for chunk in chunks:
        reader.feed(chunk)
        while (message := reader.take()) is not None:
            out.append(message)
    return out


@pytest.mark.parametrize("step", [None, 1, 7, 1000])
def test_messages_of_every_size_arrive_whole_in_any_chunking(step: int | None) -> None:
    texts = ["a", "é" * 70, "x" * 125, "y" * 126, "z" * 65535, "w" * 65536, "v" * 300_000]
    data = b"".join(client_frame(TEXT, t.encode()) for t in texts)
    assert read_all(FrameReader(1 << 20), data, step) == [(TEXT, t) for t in texts]


def test_reads_cut_anywhere_and_taken_late_give_every_message_once() -> None:
    """Reads end inside frames (the frame across two reads is joined alone, the rest
    read in place), and a paused socket's reads arrive before anything is taken."""
    rng = random.Random(3)
    texts = [f"m{i}:" + "x" * rng.choice([0, 5, 120, 126, 300, 2000, 70_000]) for i in range(300)]
    data = b"".join(client_frame(TEXT, t.encode()) for t in texts)
    for _ in range(40):
        reader = FrameReader(1 << 20)
        out: list[tuple[int, object]] = []
        pos = 0
        while pos < len(data):
            size = rng.choice([1, 2, 3, 9, 100, 1500, 4096, 65536, 200_000])
            reader.feed(data[pos : pos + size])
            pos += size
            if rng.random() < 0.3:
                continue  # paused: the next read comes before a take
            while (message := reader.take()) is not None:
                out.append(message)
                if rng.random() < 0.05:
                    break  # paused again mid-read
        while (message := reader.take()) is not None:
            out.append(message)
        assert out == [(TEXT, t) for t in texts]


def test_a_fragmented_message_is_joined_and_control_frames_come_between() -> None:
    data = (
        client_frame(TEXT, b"hel", fin=False)
        + client_frame(PING, b"p")
        + client_frame(0, b"lo ", fin=False)
        + client_frame(0, "wörld".encode())
    )
    assert read_all(FrameReader(1024), data) == [(PING, b"p"), (TEXT, "hello wörld")]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (client_frame(TEXT, b"x", masked=False), 1002),  # clients must mask
        (client_frame(TEXT, b"x", rsv=0x40), 1002),  # compressed without the extension
        (client_frame(TEXT, b"x", rsv=0x20), 1002),
        (client_frame(0, b"x"), 1002),  # a continuation of nothing
        (client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"), 1002),
        (client_frame(PING, b"x" * 126), 1002),  # control frames are short
        (client_frame(CLOSE, b"", fin=False), 1002),  # and never fragmented
        (client_frame(0x3, b""), 1002),  # a reserved opcode
        (client_frame(TEXT, b"\xff\xfe"), 1007),  # text that is not UTF-8
        (client_frame(TEXT, b"x" * 2000), 1009),  # over max_message_bytes
        (client_frame(TEXT, b"x" * 600, fin=False) + client_frame(0, b"x" * 600), 1009),
        (bytes((0x81, 0xFF)) + struct.pack("!Q", 1 << 63) + b"\0" * 4, 1002),
    ],
)
def test_each_broken_rule_has_its_close_code(data: bytes, code: int) -> None:
    with pytest.raises(FrameError) as error:
        read_all(FrameReader(1024), data)
    assert error.value.code == code


def test_a_frame_claiming_to_be_huge_is_refused_from_its_header() -> None:
    """Nothing of it is kept: the refusal comes before its payload."""
    reader = FrameReader(1 << 20)
    reader.feed(bytes((0x81, 0xFF)) + struct.pack("!Q", 1 << 40))
    with pytest.raises(FrameError) as error:
        reader.take()
    assert error.value.code == 1009


def test_close_payloads() -> None:
    assert close_payload(b"") == (1005, "")
    assert close_payload(struct.pack("!H", 3001) + b"bye") == (3001, "bye")
    for bad in (b"\x03", struct.pack("!H", 1005), struct.pack("!H", 999), struct.pack("!H", 5000)):
        with pytest.raises(FrameError) as error:
            close_payload(bad)
        assert error.value.code == 1002
    with pytest.raises(FrameError) as error:
        close_payload(struct.pack("!H", 1000) + b"\xff")
    assert error.value.code == 1007


def test_server_frames_are_unmasked_and_sized() -> None:
    assert text_frame("hi") == b"\x81\x02hi"
    assert text_frame("x" * 200)[:4] == b"\x81\x7e\x00\xc8"
    assert text_frame("x" * 70000)[:2] == b"\x81\x7f"
    assert close_frame(1001, b"r" * 200) == b"\x88\x7d\x03\xe9" + b"r" * 123


def deflated(text: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-15)
    return (packer.compress(text) + packer.flush(zlib.Z_SYNC_FLUSH))[:-4]


def test_deflated_messages_are_inflated_and_a_bomb_stops_at_the_limit() -> None:
    reader = FrameReader(10_000, Inflater(10_000, reset_each_message=False))
    data = client_frame(TEXT, deflated(b'["a",1]'), rsv=0x40) + client_frame(TEXT, b"plain")
    assert read_all(reader, data) == [(TEXT, '["a",1]'), (TEXT, "plain")]
    bomb = deflated(b"0" * 5_000_000)  # about 5 KB on the wire
    assert len(bomb) < 10_000
    with pytest.raises(FrameError) as error:
        read_all(reader, client_frame(TEXT, bomb, rsv=0x40))
    assert error.value.code == 1009
    with pytest.raises(FrameError) as error:
        read_all(FrameReader(100, Inflater(100, False)), client_frame(TEXT, b"\xff\xff", rsv=0x40))
    assert error.value.code == 1007


KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def head(*lines: str, request_line: str = "GET /room?a=1&b=x+y&a=2 HTTP/1.1") -> bytes:
    base = [
        request_line,
        "Host: example",
        "Upgrade: websocket",
        "Connection: keep-alive, Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    return "\r\n".join([*base, *lines]).encode("latin-1")


def test_an_upgrade_head_is_read_and_answered_as_rfc_6455_says() -> None:
    request = UpgradeRequest.parse(
        head("Sec-WebSocket-Protocol: 3.1_STANDARD, 2.0", "User-Agent: a", "user-agent: b"),
        "10.0.0.1",
    )
    assert request is not None
    assert request.raw_path == "/room?a=1&b=x+y&a=2"
    assert request.query() == {"a": "1", "b": "x y"}
    assert request.header("sec-websocket-protocol") == "3.1_STANDARD, 2.0"
    assert request.header("User-Agent") == "a, b"
    answer = switching(request, "3.1_STANDARD", None, (("X-Rtcstats-Worker", "1"),))
    # RFC 6455 1.3's worked example of the accept key.
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in answer
    assert b"Sec-WebSocket-Protocol: 3.1_STANDARD\r\n" in answer
    assert answer.startswith(b"HTTP/1.1 101 ") and answer.endswith(b"X-Rtcstats-Worker: 1\r\n\r\n")
    said = refusal(403, "no")
    assert said.startswith(b"HTTP/1.1 403 Forbidden\r\n") and said.endswith(b"\r\n\r\nno\n")


@pytest.mark.parametrize(
    "data",
    [
        head(request_line="POST / HTTP/1.1"),
        head(request_line="GET / HTTP/1.0"),
        head(request_line="GET  / HTTP/1.1"),
        head("Bad Header: x"),
        head(" folded"),
        head().replace(b"Version: 13", b"Version: 8"),
        head().replace(KEY.encode(), b"short"),
        head().replace(b"Upgrade: websocket", b"Upgrade: h2c"),
        head().replace(b"keep-alive, Upgrade", b"keep-alive"),
    ],
)
def test_what_is_no_upgrade_we_take_goes_to_the_http_server(data: bytes) -> None:
    assert UpgradeRequest.parse(data, "") is None


def test_deflate_offers() -> None:
    request = UpgradeRequest.parse(
        head("Sec-WebSocket-Extensions: x-other, permessage-deflate; client_max_window_bits"), ""
    )
    assert request is not None
    offer = request.deflate_offer()
    assert offer == {"client_max_window_bits": None}
    assert deflate_answer(offer) == "permessage-deflate"
    assert (
        deflate_answer({"server_max_window_bits": "10", "server_no_context_takeover": None})
        == "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"
    )
    assert deflate_answer({"server_max_window_bits": "99"}) is None
    assert deflate_answer({"unknown": None}) is None
