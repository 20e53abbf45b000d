"""Whole-document exports read incrementally (dumps/documents.py): the same events
however the bytes are cut, each cap exact to the byte, and broken documents named as
such rather than as too large."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

from rtcstats_server.dumps.events import ReadLimits
from rtcstats_server.dumps.reader import DumpReader, Event
from rtcstats_server.exceptions import DumpFormatError, DumpTooLarge

#: Strings a byte-level scanner can get wrong when a chunk ends inside them.
TRICKY = ['a "quoted" word', "back\\slash", 'ends in \\"', "\\\\", "ünïcødé ✓", "x\\", '"']


def export() -> dict[str, Any]:
    """A webrtc-internals export: update log, stats series (one of strings), gUM."""
    start, end = "2025-03-01T10:00:00.000Z", "2025-03-01T10:00:02.000Z"

    def series(values: list[Any], kind: str = "inbound-rtp") -> dict[str, Any]:
        return {
            "startTime": start,
            "endTime": end,
            "statsType": kind,
            "values": orjson.dumps(values).decode(),
        }

    return {
        "getUserMedia": [
            {"request_type": "getUserMedia", "timestamp": 1740823199000.5, "audio": ""}
        ],
        "PeerConnections": {
            "9-1": {
                "url": "https://meet.example.com/" + TRICKY[0],
                "rtcConfiguration": TRICKY[1],
                "updateLog": [
                    {"time": "2025-03-01T10:00:00.500Z", "type": "icecandidate", "value": t}
                    for t in TRICKY
                ],
                "stats": {
                    "IT1-packetsLost": series([0, 1, 2]),
                    "IT1-codec": series(TRICKY[:3]),
                    "T1-bytesSent": series([10.5, 11.5, 12.5], "transport"),
                    "IT1-[packetsLost/s]": series([1, 1, 1]),
                },
            }
        },
        "UserAgent": "Mozilla/5.0 " + TRICKY[2],
        "unknown": {"deep": [[[TRICKY]]]},
    }


def read(
    data: bytes, size: int, limits: ReadLimits | None = None
) -> tuple[DumpReader, list[Event]]:
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    reader = DumpReader(chunks, limits=limits or ReadLimits())
    return reader, list(reader)


def test_the_same_events_however_the_bytes_are_cut() -> None:
    data = orjson.dumps(export())
    whole, expected = read(data, len(data))
    assert whole.info.layout == "webrtc-internals"
    assert whole.info.metadata["UserAgent"].endswith(TRICKY[2])
    stats = [e for e in expected if e.is_stats]
    assert [e.stats["IT1"]["codec"] for e in stats] == TRICKY[:3]
    assert [e.stats["T1"]["bytesSent"] for e in stats] == [10.5, 11.5, 12.5]
    assert all("[packetsLost/s]" not in e.stats["IT1"] for e in stats)
    assert [e.value for e in expected if e.method == "onicecandidate"] == TRICKY
    assert [e.method for e in expected].count("create") == 1
    # A tight line cap too: a scanner that lost track of a string's end would count
    # the rest of the document as one token and refuse it.
    tight = ReadLimits(max_line_bytes=600)
    for size in (1, 2, 3, 7, 64):
        assert read(data, size)[1] == expected, size
        assert read(data, size, tight)[1] == expected, size
    assert read(gzip.compress(data), 5)[1] == expected


@pytest.mark.parametrize("size", [1, 5, 4096])
def test_a_token_is_refused_one_byte_past_the_line_cap(size: int) -> None:
    limit = 2048
    # Escapes count as the bytes they are written with: 1000 times `\"` plus 48 = 2048 bytes.
    text = '\\"' * 1000 + "x" * 48

    def doc(value: str) -> bytes:
        return b'{"getUserMedia": [], "skipped": "' + value.encode() + b'"}'

    read(doc(text), size, ReadLimits(max_line_bytes=limit))
    with pytest.raises(DumpTooLarge) as refused:
        read(doc(text + "y"), size, ReadLimits(max_line_bytes=limit))
    assert refused.value.cap == "line_too_long"
    number = b'{"getUserMedia": [], "n": ' + b"7" * (limit + 1) + b"}"
    with pytest.raises(DumpTooLarge, match="longer than 2048"):
        read(number, size, ReadLimits(max_line_bytes=limit))


def test_events_and_expanded_bytes_are_capped() -> None:
    data = orjson.dumps(export())
    events = len(read(data, 64)[1])
    read(data, 64, ReadLimits(max_events=events))
    with pytest.raises(DumpTooLarge) as refused:
        read(data, 64, ReadLimits(max_events=events - 1))
    assert refused.value.cap == "too_many_events"
    with pytest.raises(DumpTooLarge) as refused:
        read(data, 64, ReadLimits(max_expanded_bytes=len(data) - 1))
    assert refused.value.cap == "expanded_too_large"


@pytest.mark.parametrize(
    "data",
    [
        b'{"getUserMedia": []} {"again": 1}',
        b'{"getUserMedia": [' + b"[" * 100 + b"]" * 100 + b"]}",
        b'{"getUserMedia": [{"a": 1}',
        b'{"PeerConnections": {"1": {"stats": 7}}, "x": tru}',
        b'{"neither": "an export"}',
    ],
)
def test_broken_documents_are_not_dumps(data: bytes) -> None:
    with pytest.raises(DumpFormatError) as refused:
        read(data, 3)
    assert not isinstance(refused.value, DumpTooLarge)


def test_a_file_of_envelopes_is_not_a_document(fixtures_dir: Path) -> None:
    data = (fixtures_dir / "real" / "jitsi-jvb-sample.jsonl").read_bytes()
    reader = DumpReader([data], limits=ReadLimits(max_line_bytes=1 << 20))
    assert reader.info.layout == "jitsi-envelopes"
