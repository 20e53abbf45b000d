"""One opening of 3.1 envelopes: what the live decoder stores and what an uploaded file
of envelopes becomes are the same lines, and the pusher is named the same way."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from rtcstats_server.dialects import open_decoder
from rtcstats_server.dialects.base import DumpLine, Handshake
from rtcstats_server.dumps.envelopes import entry_seq, open_envelope, wrap
from rtcstats_server.dumps.reader import DumpReader, open_dump
from rtcstats_server.exceptions import ProtocolViolation

STREAMS = {
    "captured/jitsi-rtcstats-9.7.1-loopback-call.ws.jsonl": ("3.1_STANDARD", "3.1_STANDARD"),
    "real/jitsi-jvb-sample.jsonl": ("3.1_JVB", "3.1_JVB"),
}


def live_lines(subprotocol: str, messages: list[str]) -> list[str]:
    session = orjson.loads(messages[0]).get("statsSessionId") or "s1"
    query = {"statsSessionId": session} if subprotocol == "3.1_STANDARD" else {}
    handshake = Handshake("/x", query, subprotocol, "", "", "")
    decoder = open_decoder(handshake)
    return [r.text for m in messages for r in decoder.feed(m) if isinstance(r, DumpLine)]


def without_arrival_time(line: str) -> object:
    """A pusher's identity object is stamped when it arrives (live) or with its own
    time (a file): everything else must be equal."""
    entry = orjson.loads(line)
    pusher = isinstance(entry, list) and entry[0] == "identity" and isinstance(entry[2], dict)
    return entry[:3] if pusher else line


@pytest.mark.parametrize("name", STREAMS)
def test_live_and_uploaded_envelopes_store_the_same_lines(fixtures_dir: Path, name: str) -> None:
    subprotocol, protocol = STREAMS[name]
    path = fixtures_dir / name
    messages = [line for line in path.read_text().splitlines() if line.strip()]
    live = live_lines(subprotocol, messages)
    reader = open_dump(path)
    copied = [line.decode() for line in reader.lines()]
    assert reader.info.client_protocol == protocol  # named by its first identity
    assert [without_arrival_time(x) for x in copied] == [without_arrival_time(x) for x in live]
    assert len(live) == sum('"type":"keepalive"' not in m for m in messages)


def test_a_stats_entry_spanning_lines_is_stored_on_one() -> None:
    data = '["getstats",\n"PC_0",\n{},\n1700000000000,\n7]'
    envelope = {"type": "stats-entry", "data": data}
    assert open_envelope(envelope) == '["getstats","PC_0",{},1700000000000,7]'
    (line,) = live_lines("3.1_STANDARD", [orjson.dumps(envelope).decode()])
    assert line == open_envelope(envelope)
    file = orjson.dumps({"type": "identity", "data": ["identity", None, {}, 1, 1]})
    file += b"\n" + orjson.dumps(envelope) + b"\n"
    assert [x.decode() for x in DumpReader([file]).lines()][1] == line
    events = list(DumpReader([file], strict=True))
    assert [(e.method, e.seq) for e in events] == [("identity", 1), ("getStats", 7)]


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        (["not", "an", "object"], "wrong_shape"),
        ({"type": "stats-entry", "data": {"x": 1}}, "wrong_shape"),
        ({"type": "stats-entry", "data": "[1,\n"}, "invalid_json"),
        ({"type": "identity", "data": "text"}, "wrong_shape"),
        ({"type": "identity", "data": ["identity", None]}, "wrong_shape"),
    ],
)
def test_what_carries_nothing_readable_is_refused(envelope: object, reason: str) -> None:
    with pytest.raises(ProtocolViolation) as refused:
        open_envelope(envelope)
    assert refused.value.reason == reason


def test_control_envelopes_carry_no_line_and_stored_lines_wrap_back() -> None:
    for kind in ("keepalive", "close", "sn", "bogus"):
        assert open_envelope({"type": kind, "data": "[1,2,3]"}) is None
    pusher = {"confName": "c", "applicationName": "JVB", "timestamp": 5}
    assert (
        open_envelope({"type": "identity", "data": pusher})
        == orjson.dumps(["identity", None, pusher, 5]).decode()
    )
    assert (
        open_envelope({"type": "identity", "data": pusher}, lambda: 9.4)
        == orjson.dumps(["identity", None, pusher, 9]).decode()
    )
    identity = ["identity", None, {"confName": "c"}, 1, 3]
    assert wrap(orjson.dumps(identity).decode(), identity) == ("identity", identity)
    text = '["getstats","PC_0",{},2,4]'
    assert wrap(text, orjson.loads(text)) == ("stats-entry", text)
    assert [entry_seq(identity), entry_seq(orjson.loads(text)), entry_seq([1, 2, 3])] == [
        3,
        4,
        None,
    ]
