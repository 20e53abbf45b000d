"""Geolocation before IP masking, through a live collector with MaxMind's test databases.

Masking (the default) stores no address; the analysis, later, cannot look one up. So
ingest looks up the client's address and each candidate's before masking, and writes
the locations (never the addresses) into the dump: the session's features then have
them, for the rtcstats-js dialect (location after the value) as for jitsi's (after the
sequence number).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rtcstats_server.dumps.codes import STAT_PROPERTY_CODES
from tests.services.collector import RunningCollector, run_collector
from tests.services.maxmind import ASN_DB, CITY_DB, require_databases

#: In the test databases: Linköping (SE, AS29518 Bredband2 AB) and London (GB, no ASN).
CLIENT = "89.160.20.115"
RELAY = "89.160.20.112"
REMOTE = "81.2.69.142"
ADDRESS = str(STAT_PROPERTY_CODES["address"])


@pytest.fixture
async def collector(tmp_path: Path) -> AsyncIterator[RunningCollector]:
    require_databases()
    settings = {
        "privacy": {"obfuscate_ip_addresses": True},
        "geo": {"city_db": str(CITY_DB), "asn_db": str(ASN_DB)},
        "limits": {"trusted_proxies": ["127.0.0.1/32"]},
    }
    async with run_collector(tmp_path / "data", settings) as running:
        yield running


def candidate(kind: str, address: str, port: int) -> dict[str, Any]:
    line = f"candidate:1 1 udp 41885439 {address} {port} typ {kind} raddr 0.0.0.0 rport 0"
    return {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}


def getstats() -> dict[str, Any]:
    """A selected pair between the relay and the remote (rtcstats-js sends the
    address under its property code)."""
    return {
        "T01": {"type": "transport", "selectedCandidatePairId": "CP"},
        "CP": {"type": "candidate-pair", "localCandidateId": "L", "remoteCandidateId": "R"},
        "L": {"type": "local-candidate", ADDRESS: RELAY, "port": 50001, "candidateType": "relay"},
        "R": {"type": "remote-candidate", ADDRESS: REMOTE, "port": 40000, "candidateType": "host"},
    }


def rtcstats_js_messages() -> list[list[Any]]:
    now = int(time.time() * 1000)
    return [
        [39, None, {"hardwareConcurrency": 4}, now],
        [39, "PC_0", {"iceServers": []}, 1],
        [20, "PC_0", candidate("relay", RELAY, 50001), 5],
        [10, "PC_0", candidate("host", REMOTE, 40000), 5],
        [25, "PC_0", "connected", 5],
        ["g", "PC_0", getstats(), 10],
    ]


def jitsi_messages(session: str) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    entries = [
        ["create", "PC_0", {"iceServers": []}, now],
        ["onicecandidate", "PC_0", candidate("relay", RELAY, 50001), now + 5],
        ["addIceCandidate", "PC_0", candidate("host", REMOTE, 40000), now + 10],
    ]
    return [
        {"statsSessionId": session, "type": "stats-entry", "data": json.dumps([*e, n + 1])}
        for n, e in enumerate(entries)
    ]


async def stream(collector: RunningCollector, protocol: str, path: str, messages: list[Any]) -> str:
    headers = {"X-Forwarded-For": CLIENT}
    async with collector.http.ws_connect(
        collector.ws_url + path, protocols=(protocol,), headers=headers
    ) as ws:
        if protocol.startswith("3.1"):
            await ws.receive()  # the sn opening
        for message in messages:
            await ws.send_str(json.dumps(message))
        await ws.close(code=3001 if protocol.startswith("3.1") else 1000)
    record = await collector.wait_for_record(
        lambda r: r.get("dialect") == protocol and r.get("quality") is not None
    )
    session: str = record["id"]
    return session


async def test_rtcstats_js_session_locations_without_addresses(
    collector: RunningCollector,
) -> None:
    session = await stream(collector, "rtcstats#5.0", "/call", rtcstats_js_messages())
    dump = await collector.dump_text(session)
    for address in (CLIENT, RELAY, REMOTE):
        assert address not in dump
    lines = dump.splitlines()
    assert json.loads(lines[1])["location"]["city"] == "Linköping"
    gathered = next(json.loads(line) for line in lines if line.startswith("[20,"))
    # after the value, before the time delta, as the peer's server writes it
    assert gathered[3] == {
        "rtcstatsLocation": {
            "continent": "Europe",
            "country": "Sweden",
            "city": "Linköping",
            "asn": 29518,
            "organization": "Bredband2 AB",
        }
    }
    assert gathered[2]["candidate"].split()[4] == "x.x.x.x"

    features = (await collector.get_json(f"/v1/sessions/{session}/features"))["features"]
    assert features["client"]["location_city"] == "Linköping"
    assert features["client"]["location_asn"] == 29518
    pc = features["connections"][0]
    assert pc["first_candidate_pair_local_address"] == "x.x.x.x"
    assert pc["rtcstats_location_city"] == "Linköping"
    assert pc["rtcstats_location_organization"] == "Bredband2 AB"
    assert pc["rtcstats_peer_location_city"] == "London"
    assert pc["turn_location_country"] == "Sweden"


async def test_jitsi_session_locations_follow_the_sequence_number(
    collector: RunningCollector,
) -> None:
    session_name = "geo-jitsi-1"
    messages = jitsi_messages(session_name)
    session = await stream(
        collector, "3.1_STANDARD", f"/room?statsSessionId={session_name}", messages
    )
    dump = await collector.dump_text(session)
    assert RELAY not in dump and REMOTE not in dump
    added = next(json.loads(line) for line in dump.splitlines() if "addIceCandidate" in line)
    assert added[4] == 3  # the sequence number stays where the dialect has it
    assert added[5]["rtcstatsLocation"]["city"] == "London"
    features = (await collector.get_json(f"/v1/sessions/{session}/features"))["features"]
    assert features["connections"][0]["turn_location_city"] == "Linköping"
    assert features["client"]["location_country"] == "Sweden"


async def test_without_masking_lines_stay_and_the_analysis_looks_up(tmp_path: Path) -> None:
    """Masking off: candidate lines are stored as sent (no location written in), and the
    analysis step looks their addresses up with the collector's databases."""
    require_databases()
    settings = {
        "privacy": {"obfuscate_ip_addresses": False},
        "geo": {"city_db": str(CITY_DB), "asn_db": str(ASN_DB)},
    }
    async with run_collector(tmp_path / "data", settings) as collector:
        session = await stream(collector, "rtcstats#5.0", "/plain", rtcstats_js_messages())
        dump = await collector.dump_text(session)
        gathered = next(json.loads(line) for line in dump.splitlines() if line.startswith("[20,"))
        assert len(gathered) == 4 and RELAY in gathered[2]["candidate"]
        features = (await collector.get_json(f"/v1/sessions/{session}/features"))["features"]
        pc = features["connections"][0]
        assert pc["rtcstats_location_city"] == "Linköping"
        assert pc["rtcstats_peer_location_city"] == "London"
        assert pc["first_candidate_pair_local_address"] == RELAY
