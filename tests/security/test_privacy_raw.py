"""The masker's raw fast path masks exactly what parsing each line and masking its
strings (``mask_parsed``, the reference) masks: the same addresses, the same kept
texts, on every line shape the ingest path meets, including escapes next to an
address, IPv6 with zones and embedded quads, and fingerprints that look like IPv6.
Where nothing is masked the line stays the very same string."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from rtcstats_server.dumps import privacy
from rtcstats_server.dumps.privacy import mask_line, mask_parsed

CAPTURED = Path(__file__).resolve().parents[2] / "../shared/fixtures/captured"

#: Strings that hold, almost hold or border addresses; escapes included (as decoded text).
PIECES = [
    "192.168.1.5",
    "10.0.0.1",
    "0.0.0.0",
    "::",
    "::1",
    "fe80::1%eth0",
    "fd00::2",
    "2001:db8::7",
    "[2001:db8::1]:443",
    "::ffff:10.1.2.3",
    "2a05:d018:1a5:2401:ae1e:1ec:6eb8:1310",
    "turn:198.51.100.1:3478",
    "Chrome/140.0.0.0",
    "1.2.3.4.5",
    "999.1.1.1",
    "01.2.3.4",
    "AB:CD:EF:01:23:45",
    "CF2F:F6:86:1F:AB:F0:17:62:B1:44:2B:2D:2A:C8:2C:23:AE:51:B9:DD:27:6C:7F:A2",
    "abc.local",
    "x1.2.3.4",
    "1.2.3.4x",
    "\n",
    "\r\n",
    "\t",
    '"',
    "\\",
    "/",
    "\f",
    "\b",
    "\u0001",
    " ",
    ":",
    ".",
    "%",
    "a",
    "n",
    "é",
    "audio",
    "5000",
    "-",
    "a-",
    "b::1",
    "%",
    "1:2:3:4:5:6:7:8",
    "1::2:3.4.5.6",
    "é1.2.3.4",
    "\\u0041",
]


def line_with(values: list[str], method: str = "onicecandidate") -> str:
    """A dump line as a client encodes it (JSON.stringify escapes like orjson)."""
    report = {f"k{index}": value for index, value in enumerate(values)}
    return orjson.dumps([method, "PC_0", report, 12]).decode()


def assert_same(line: str) -> None:
    fast = mask_line(line)
    reference = mask_parsed(line)
    if reference is None:
        assert fast is None, line
    else:
        assert fast is not None, line
        assert orjson.loads(fast) == orjson.loads(reference), line


@pytest.mark.parametrize(
    "value",
    [
        "candidate:1 1 udp 2122 192.168.1.5 5000 typ srflx raddr 10.0.0.1 rport 9",
        "a\n192.168.1.5",  # an escape's letter before the address
        "a\r\n10.0.0.1\r\n",
        "x\t/10.0.0.1",  # not a version: the slash follows a tab
        "Chrome/140.0.0.0",
        'say "10.0.0.1"',
        "\nfe80::1%eth0\n",
        "\fab::1",  # a hex escape letter right before a colon address
        "\\n10.0.0.1",  # a backslash and an n, not a newline
        "\u000110.0.0.1",
        "::ffff:10.1.2.3",
        "1.2.3.4:5.6.7.8",
        "AB:CD:EF:01:23:45",
        "fe80::1.x",
        "2001:db8::1%eth0.5-a more",
    ],
)
def test_raw_path_equals_parsing(value: str) -> None:
    assert_same(line_with([value]))
    assert_same(line_with([value, value]))


def test_raw_path_equals_parsing_on_mixed_strings() -> None:
    rng = random.Random(17)
    for _ in range(3000):
        values = ["".join(rng.choices(PIECES, k=rng.randint(1, 6))) for _ in range(3)]
        assert_same(line_with(values))


@pytest.mark.parametrize(
    "name",
    ["rtcstats-js-2.4.0-loopback-call.ws.jsonl", "jitsi-rtcstats-9.7.1-loopback-call.ws.jsonl"],
)
def test_raw_path_equals_parsing_on_captures(name: str) -> None:
    lines = []
    for raw in (CAPTURED / name).read_text().splitlines():
        message = orjson.loads(raw)
        data = message.get("data") if isinstance(message, dict) else raw
        lines.append(data if isinstance(data, str) else orjson.dumps(data).decode())
    masked = 0
    for line in lines:
        assert_same(line)
        masked += mask_line(line) is not None
    assert masked >= 6


def test_untouched_line_is_the_same_string() -> None:
    line = line_with(["AB:CD:EF:01:23:45", "0.0.0.0", "abc.local"])
    assert mask_line(line) is None
    assert privacy._mask_raw(line) is line


def test_masked_line_keeps_every_other_byte() -> None:
    # Not re-encoded: a float written as the client wrote it stays so.
    line = '[20,"0",{"candidate":"candidate:1 1 udp 1 192.0.2.2 5 typ host","x":1.50},3]'
    assert mask_line(line) == line.replace("192.0.2.2", "x.x.x.x")
