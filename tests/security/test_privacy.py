"""IP masking: every real fixture replayed with ``privacy.obfuscate_ip_addresses`` on
leaves no full address of any family in any stored dump or record; with it off the
same addresses are all there (so the scan would see them)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from rtcstats_server.dumps.privacy import mask_line, mask_remote, mask_text
from tests.ingest.test_replay_fixtures import CASES, load, replay
from tests.services.collector import RunningCollector, run_collector, wait_until

#: Deliberately wider than the masker's own patterns; every hit is validated.
V4 = re.compile(r"(?<![0-9.])[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?![0-9.])")
V6 = re.compile(r"[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*")
#: Browser versions (Chrome/140.0.0.0) look like addresses and are not.
VERSION = re.compile(r"[A-Za-z]/$")


def full_addresses(text: str) -> set[str]:
    found = set()
    for match in V4.finditer(text):
        if VERSION.search(text[max(0, match.start() - 2) : match.start()]):
            continue
        try:
            address = ipaddress.IPv4Address(match.group())
        except ValueError:
            continue
        if not address.is_unspecified:
            found.add(match.group())
    for match in V6.finditer(text):
        # The whole run, and the run without a trailing ":port" (unbracketed forms).
        run = match.group().strip(".")
        for candidate in (run, run.rsplit(":", 1)[0]):
            try:
                address = ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            if not address.is_unspecified:
                found.add(candidate)
    return found


async def replay_all(collector: RunningCollector, fixtures: Path) -> list[dict[str, Any]]:
    for kind, name in CASES:
        await replay(collector, load(fixtures, kind, name))

    async def all_stored() -> bool:
        page = await collector.get_json("/v1/sessions?state=stored&limit=100")
        return len(page["sessions"]) == len(CASES)

    await wait_until(all_stored, what="every fixture stored")
    page = await collector.get_json("/v1/sessions?limit=100")
    records: list[dict[str, Any]] = page["sessions"]
    return records


@pytest.mark.parametrize("obfuscate", [True, False], ids=["masked", "unmasked"])
async def test_no_address_survives_in_dumps_or_records(
    tmp_path: Path, fixtures_dir: Path, obfuscate: bool
) -> None:
    settings = {"privacy": {"obfuscate_ip_addresses": obfuscate}}
    async with run_collector(tmp_path / "data", settings) as collector:
        records = await replay_all(collector, fixtures_dir)
        survivors: dict[str, set[str]] = {}
        for record in records:
            dump = await collector.dump_text(record["id"])
            # viewer_url holds this collector's own public address, not a client's
            own_links = {k: v for k, v in record.items() if k != "viewer_url"}
            found = full_addresses(dump) | full_addresses(orjson.dumps(own_links).decode())
            if found:
                survivors[record["url"]] = found
    if obfuscate:
        assert survivors == {}
        assert {r["remote_address"] for r in records} == {"127.0.0.x"}
    else:
        everything = set().union(*survivors.values())
        # Candidates, SDP and candidate stats of every family, from the real fixtures.
        for address in (
            "192.168.1.154",
            "10.200.3.224",
            "2a05:d018:1a5:2401:ae1e:1ec:6eb8:1310",
            "fd00::2",
            "192.0.2.2",
            "127.0.0.1",
        ):
            assert address in everything
        assert len(survivors) >= 8


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '["onicecandidate","PC_0",{"candidate":"candidate:1 1 udp 2122 192.168.1.5 5000 '
            'typ srflx raddr 10.0.0.1 rport 9","sdpMid":"0"},1]',
            '["onicecandidate","PC_0",{"candidate":"candidate:1 1 udp 2122 x.x.x.x 5000 '
            'typ srflx raddr x.x.x.x rport 9","sdpMid":"0"},1]',
        ),
        (
            '[20,"0",{"candidate":"candidate:2 1 udp 1 fe80::1%eth0 5 typ host"},7]',
            '[20,"0",{"candidate":"candidate:2 1 udp 1 x:x:x:x:x:x:x:x 5 typ host"},7]',
        ),
        (
            '["setLocalDescription","PC_0",{"type":"offer","sdp":"c=IN IP4 0.0.0.0\\r\\n'
            'a=candidate:1 1 udp 1 [2001:db8::7]:5 typ host\\r\\n"},1]',
            '["setLocalDescription","PC_0",{"type":"offer","sdp":"c=IN IP4 0.0.0.0\\r\\n'
            'a=candidate:1 1 udp 1 [x:x:x:x:x:x:x:x]:5 typ host\\r\\n"},1]',
        ),
        (
            '["getstats","PC_0",{"C1":{"type":"local-candidate","address":"203.0.113.4",'
            '"url":"turn:198.51.100.1:3478"}},1]',
            '["getstats","PC_0",{"C1":{"type":"local-candidate","address":"x.x.x.x",'
            '"url":"turn:x.x.x.x:3478"}},1]',
        ),
        (
            '["g","0",{"3":{"134":"203.0.113.4","141":"::ffff:10.1.2.3"}},5]',
            '["g","0",{"3":{"134":"x.x.x.x","141":"::ffff:x.x.x.x"}},5]',
        ),
        (
            '["create",null,{"iceServers":[{"urls":"turn:[2001:db8::1]:443"}]},1]',
            '["create",null,{"iceServers":[{"urls":"turn:[x:x:x:x:x:x:x:x]:443"}]},1]',
        ),
    ],
)
def test_masked_lines(line: str, expected: str) -> None:
    assert mask_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        '["getstats","PC_0",{"R1":{"type":"inbound-rtp","jitter":1.234,"x":"1.2.3.4"}},1]',
        '["ontrack","PC_0","audio 1.2.3.4",1]',  # no address can be here: not even looked at
        '["g","0",{"3":{"14":5,"57":0.25}},5]',
        '["onicecandidate","PC_0",{"candidate":"candidate:1 1 udp 1 abc.local 5 typ host"},1]',
        '["setRemoteDescription","PC_0",{"sdp":"a=fingerprint:sha-256 AB:CD:EF:01:23:45"},1]',
    ],
)
def test_untouched_lines_stay_byte_for_byte(line: str) -> None:
    assert mask_line(line) is None


def test_masking_helpers() -> None:
    assert mask_remote("203.0.113.7") == "203.0.113.x"
    assert mask_remote("2001:db8:1:2::5") == "2001:db8:1:x:x:x:x:x"
    assert mask_text("wss://192.168.245.128:3000 Chrome/140.0.0.0") == (
        "wss://x.x.x.x:3000 Chrome/140.0.0.0"
    )
