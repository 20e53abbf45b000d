"""Dialect decoders, fed captured and real messages only: no sockets involved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtcstats_server.dialects import choose_subprotocol, open_decoder
from rtcstats_server.dialects.base import (
    DumpLine,
    EndOfSession,
    Handshake,
    Identity,
    Reply,
)
from rtcstats_server.exceptions import HandshakeRefused, ProtocolViolation
from tests.services import streams


def handshake(subprotocol: str, **query: str) -> Handshake:
    return Handshake(
        path="/room", query=query, subprotocol=subprotocol, user_agent="", origin="", remote=""
    )


def feed_all(subprotocol: str, messages: list[str], **query: str) -> list[object]:
    decoder = open_decoder(handshake(subprotocol, **query))
    results: list[object] = []
    for message in messages:
        results.extend(decoder.feed(message))
    return results


def test_jitsi_client_stream_becomes_dump_lines_with_seq(fixtures_dir: Path) -> None:
    stream = streams.captured(fixtures_dir, "jitsi-rtcstats-9.7.1-loopback-call")
    decoder = open_decoder(
        handshake("3.1_STANDARD", statsSessionId="1517194c-3c5d-4c55-a475-f49f84f23c92")
    )
    assert decoder.opening(0) == [Reply('{"type":"sn","body":{"value":0,"state":"initial"}}')]
    results = [r for m in stream.messages for r in decoder.feed(m)]
    lines = [r for r in results if isinstance(r, DumpLine)]
    assert [line.text for line in lines] == stream.expected_lines
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
    identities = [r for r in results if isinstance(r, Identity)]
    assert identities == [
        Identity(
            {
                "conference_id": "devroom31",
                "user_id": "tester",
                "display_name": "tester",
                "meeting_id": "mu-devroom31",
                "app": "harness",
                "endpoint_id": "ep1",
            }
        )
    ]
    ack = decoder.ack(42)
    assert ack is not None and json.loads(ack.text) == {
        "type": "sn",
        "body": {"value": 42, "state": "ack"},
    }


@pytest.mark.parametrize(
    ("name", "subprotocol"),
    [("rtcstats-js-2.4.0-loopback-call", "rtcstats#5.0"), ("rtcstats-5.2.0-loopback-call", "2.0")],
)
def test_array_dialects_store_messages_verbatim(
    fixtures_dir: Path, name: str, subprotocol: str
) -> None:
    stream = streams.captured(fixtures_dir, name)
    decoder = open_decoder(handshake(subprotocol))
    assert decoder.opening(0) == [] and decoder.ack(5) is None
    lines = [r.text for m in stream.messages for r in decoder.feed(m) if isinstance(r, DumpLine)]
    assert lines == stream.messages


def test_only_rtcstats_js_writes_relative_times() -> None:
    """The session's close line follows this (tests/sessions/test_session_lifecycle.py)."""
    names = ("rtcstats#5.0", "rtcstats#4.0", "2.0", "3.1_STANDARD", "3.1_LEGACY", "2_JVB")
    relative = {n: open_decoder(handshake(n, statsSessionId="s-1")).relative_time for n in names}
    assert relative == {name: name.startswith("rtcstats#") for name in names}


def test_only_the_standard_jitsi_client_says_it_sends_w3c_stats() -> None:
    """Masking looks for one marker in such a client's getStats (dumps/privacy.py): a
    legacy client's ``googCandidatePair`` addresses need the other one too."""
    names = ("rtcstats#5.0", "rtcstats#4.0", "2.0", "3.1_STANDARD", "3.1_LEGACY", "2_JVB")
    standard = {n: open_decoder(handshake(n, statsSessionId="s-1")).standard_stats for n in names}
    assert standard == {name: name == "3.1_STANDARD" for name in names}


def test_jvb_pusher_identity_object_and_session_from_messages(fixtures_dir: Path) -> None:
    stream = streams.jvb_pusher(fixtures_dir)
    decoder = open_decoder(handshake("3.1_JVB"))
    assert decoder.opening(0) == [] and not decoder.resumable
    results = [r for m in stream.messages[:3] for r in decoder.feed(m)]
    assert decoder.client_session_id == "xxxx-yyyy-zzzz"
    first = results[0]
    assert isinstance(first, DumpLine) and json.loads(first.text)[:2] == ["identity", None]
    assert isinstance(results[1], Identity) and results[1].fields["app"] == "JVB"


def test_jitsi_disk_dumps_decode_every_entry(fixtures_dir: Path) -> None:
    for name in ("jitsi-safari-standard-stats.jsonl", "jitsi-undefined-ice-candidate.jsonl"):
        stream = streams.jitsi_disk_dump(fixtures_dir, name)
        lines = [
            r
            for r in feed_all("3.1_STANDARD", stream.messages, statsSessionId="replay-1")
            if isinstance(r, DumpLine)
        ]
        assert len(lines) == len(stream.expected_lines)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("{not json", "invalid_json"),
        ("[1,2,3]", "wrong_shape"),
        ('{"type":"stats-entry","data":["x"]}', "wrong_shape"),
        ('{"type":"stats-entry","data":"[broken"}', "invalid_json"),
        ('{"type":"sn","body":{"value":3}}', "control_from_client"),
        ('{"type":"bogus"}', "unknown_type"),
        (
            '{"statsSessionId":"other","type":"stats-entry","data":"[1,2,3,4,5]"}',
            "session_mismatch",
        ),
        ('{"type":"identity","data":"text"}', "wrong_shape"),
    ],
)
def test_jitsi_violations_name_their_reason(message: str, reason: str) -> None:
    decoder = open_decoder(handshake("3.1_STANDARD", statsSessionId="abc"))
    with pytest.raises(ProtocolViolation) as raised:
        decoder.feed(message)
    assert raised.value.reason == reason and raised.value.close_code is None


@pytest.mark.parametrize("message", ["{}", '"text"', "[1]", "12", "[" * 5000 + "]" * 5000])
def test_array_dialect_refuses_what_is_not_an_event(message: str) -> None:
    with pytest.raises(ProtocolViolation):
        open_decoder(handshake("rtcstats#5.0")).feed(message)


def test_multiline_message_is_stored_as_one_line() -> None:
    (line,) = open_decoder(handshake("2.0")).feed('[\n"create",\n"PC_0",\n{}\n,1]')
    assert isinstance(line, DumpLine) and line.text == '["create","PC_0",{},1]'


def test_close_envelope_ends_session() -> None:
    assert feed_all("3.1_STANDARD", ['{"type":"close"}'], statsSessionId="a") == [EndOfSession()]


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        ("3.1_STANDARD", "3.1_STANDARD"),
        ("bogus, rtcstats#5.0", "rtcstats#5.0"),
        ("2.0", "2.0"),
        ("3.1_JICOFO", "3.1_JICOFO"),
        ("rtcstats#4.0", "rtcstats#4.0"),
    ],
)
def test_subprotocol_choice(offered: str, chosen: str) -> None:
    assert choose_subprotocol(offered) == chosen


@pytest.mark.parametrize(
    ("offered", "reason"), [("", "no_subprotocol"), ("3.0", "unknown_subprotocol")]
)
def test_unknown_subprotocols_are_refused(offered: str, reason: str) -> None:
    with pytest.raises(HandshakeRefused) as refused:
        choose_subprotocol(offered)
    assert refused.value.status == 400 and refused.value.reason == reason


@pytest.mark.parametrize("session_id", ["../../etc/passwd", "a b", "x" * 129, "é"])
def test_session_ids_that_could_reach_a_path_are_refused(session_id: str) -> None:
    with pytest.raises(HandshakeRefused) as refused:
        open_decoder(handshake("3.1_STANDARD", statsSessionId=session_id))
    assert refused.value.status == 400


def test_jitsi_client_needs_a_session_id() -> None:
    with pytest.raises(HandshakeRefused):
        open_decoder(handshake("3.1_LEGACY"))
