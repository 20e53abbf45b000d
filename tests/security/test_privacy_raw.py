"""The masker's raw fast path and its parsing path mask exactly what parsing each
line and trying both patterns at every position of its strings (the reference)
masks: the same addresses, the same kept
texts, on every line shape the ingest path meets, including escapes next to an
address, IPv6 with zones and embedded quads, and fingerprints that look like IPv6.
Where nothing is masked the line stays the very same string."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from rtcstats_server.dumps import privacy
from rtcstats_server.dumps.privacy import mask_line, mask_parsed, mask_plain_reference

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


def reference_text(text: str) -> str:
    """Masking as it was first written: SDP line by line, every pattern everywhere."""
    if text.startswith("v=0") and "\n" in text:
        lines = text.split("\n")
        return "\n".join(
            mask_plain_reference(line) if line.startswith(privacy._SDP_ADDRESS_LINES) else line
            for line in lines
        )
    return mask_plain_reference(text)


def reference_walk(value: Any) -> Any:
    if type(value) is str:
        return reference_text(value)
    if type(value) is list:
        return [reference_walk(item) for item in value]
    if type(value) is dict:
        return {key: reference_walk(item) for key, item in value.items()}
    return value


def reference(line: str) -> str | None:
    parsed = orjson.loads(line)
    masked = reference_walk(parsed)
    return None if masked == parsed else orjson.dumps(masked).decode()


def assert_same(line: str) -> None:
    fast = mask_line(line)
    assert mask_parsed(line) == reference(line), line
    reference_line = reference(line)
    if reference_line is None:
        assert fast is None, line
    else:
        assert fast is not None, line
        assert orjson.loads(fast) == orjson.loads(reference_line), line


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


def test_hinted_masking_equals_the_reference_on_text() -> None:
    """Decoded strings (SDP lines, texts of the slow path) go through the same hints."""
    rng = random.Random(31)
    for _ in range(5000):
        text = "".join(rng.choices(PIECES, k=rng.randint(1, 8)))
        assert privacy._mask_plain(text) == mask_plain_reference(text), repr(text)


def test_sdp_lines_equal_the_reference() -> None:
    """An SDP masks its address lines only (a fingerprint is no address)."""
    rng = random.Random(5)
    starts = [
        "c=IN IP4 ",
        "o=- 1 2 IN IP6 ",
        "a=candidate:1 1 udp 1 ",
        "a=rtcp:9 IN IP4 ",
        "a=fingerprint:",
    ]
    starts += ["a=remote-candidates:1 ", "m=audio 9 ", ""]
    for _ in range(2000):
        lines = ["v=0"] + [
            rng.choice(starts) + "".join(rng.choices(PIECES, k=rng.randint(0, 4)))
            for _ in range(rng.randint(1, 6))
        ]
        sdp = rng.choice(["\r\n", "\n"]).join(lines)
        line = orjson.dumps(["setLocalDescription", "PC_0", {"type": "offer", "sdp": sdp}, 3])
        assert_same(line.decode())


def test_sdp_lines_seen_before_are_masked_the_same_and_kept_bounded() -> None:
    """Address lines come back in every description: they are looked up, not masked
    again, and a client sending ever new lines cannot grow what is kept."""
    sdp = "v=0\r\no=- 7 2 IN IP4 192.0.2.9\r\nc=IN IP4 198.51.100.7\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"
    line = orjson.dumps(["setRemoteDescription", "PC_0", {"type": "answer", "sdp": sdp}, 3])
    first = mask_line(line.decode())
    assert first is not None and "192.0.2.9" not in first and "198.51.100.7" not in first
    assert privacy._SDP_LINES["\nc=IN IP4 198.51.100.7\r"] == "\nc=IN IP4 x.x.x.x\r"
    assert mask_line(line.decode()) == first
    for index in range(privacy._SDP_LINES_MAX + 10):
        privacy._mask_sdp(f"v=0\nc=IN IP4 10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}")
    assert len(privacy._SDP_LINES) <= privacy._SDP_LINES_MAX
    long_line = "v=0\na=candidate:1 1 udp 1 203.0.113.5 9 typ host " + "x" * 300
    assert "x.x.x.x" in privacy._mask_sdp(long_line)
    assert not any(key.startswith("\na=candidate:1 1 udp 1 203") for key in privacy._SDP_LINES)


@pytest.mark.parametrize(
    "value",
    [
        "1:2:3:4:5:6:7:8",  # seven colons: the most an address has
        "1:2:3:4:5:6:7:8:9",  # eight: skipped without the patterns, as they find nothing
        "CF2F:F6:86:1F:AB:F0:17:62:B1:44:2B:2D:2A:C8:2C:23:AE:51:B9:DD:27:6C:7F:A2",
        "2F:F6:86:1F:AB:F0:17:62:B1-fe80::1",  # a dash: an address may start after it
        "2F:F6:86:1F:AB:F0:17:62:B1%fe80::1",
        "1:2:3:4:5:6:7:8:9.10.0.0.1",  # a dot: a dotted quad may be inside
        "fe80::1:2:3:4:5:6",
    ],
)
def test_clusters_of_many_colons_are_masked_as_the_reference_says(value: str) -> None:
    """Clusters with more than seven colons and no dot, ``%`` or ``-`` are passed over
    without the patterns (a certificate's fingerprint); the rest are not."""
    assert_same(line_with([value, "x " + value + " y"]))
    assert privacy._mask_plain(value) == mask_plain_reference(value)


REAL = Path(__file__).resolve().parents[2] / "../shared/fixtures/real"


def test_the_standard_marker_is_found_wherever_a_scan_finds_it() -> None:
    """Dashes are looked at one by one up to a bound, then the scan takes the rest:
    the marker is found at every position, before, at and past the bound."""
    bound = privacy._DASHES_TRIED
    for dashes in range(bound + 3):
        for marked in (False, True):
            text = "x-" * dashes + ('{"type":"local-candidate"}' if marked else '"local"')
            assert privacy._names_standard_candidate(text) is marked, (dashes, marked)
            text = ('"remote-candidate"' if marked else "candidate") + "-y" * dashes
            assert privacy._names_standard_candidate(text) is marked, (dashes, marked)
    parts = ["-", '-candidate"', 'candidate"', "a", '"', "--", "local-candidat", 'e"', "-c"]
    rng = random.Random(11)
    for _ in range(5000):
        text = "".join(rng.choices(parts, k=rng.randint(0, 3 * bound)))
        found = privacy._names_standard_candidate(text)
        assert found is (privacy.STANDARD_MARKER in text), text


def test_standard_stats_lose_no_address_to_the_one_marker() -> None:
    """Real W3C stats of Chrome, Firefox and Safari: with ``standard_stats`` every line
    is masked as the two full-name markers would have it masked."""
    stats_masked = 0
    for name in (
        "jitsi-chrome-standard-pc-failed.jsonl",
        "jitsi-firefox97-standard-stats-sfu.jsonl",
        "jitsi-google-standard-stats-sfu.jsonl",
        "jitsi-safari-standard-stats.jsonl",
    ):
        lines = [line for line in (REAL / name).read_text().splitlines() if line.strip()]
        assert orjson.loads(lines[0])[2]["clientProtocol"] == "3.1_STANDARD"
        stats = [line for line in lines if line.startswith('["getstats"')]
        assert any(privacy.STANDARD_MARKER in line for line in stats), name
        for line in lines[1:]:
            assert mask_line(line, standard_stats=True) == mask_line(line), (name, line[:200])
        stats_masked += sum(mask_line(line, standard_stats=True) is not None for line in stats)
    assert stats_masked >= 2


def test_legacy_stats_are_masked_by_their_own_marker() -> None:
    """Legacy reports name an address ``googLocalAddress`` without a candidate type:
    the full-name markers (the default) catch them."""
    report = {"googLocalAddress": "192.0.2.7:5000", "googRemoteAddress": "198.51.100.2:9"}
    line = orjson.dumps(["getstats", "PC_0", {"Conn-audio-1-0": report}, 5]).decode()
    masked = mask_line(line)
    assert masked is not None and "192.0.2.7" not in masked and "198.51.100.2" not in masked
