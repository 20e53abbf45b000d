"""Turns the real fixtures into what a client would send, and what the dump must hold.

Captured streams are replayed exactly; jitsi on-disk dumps are wrapped back into the
3.1 envelopes their client sent; the rtcstats dump loses its two header lines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

#: The jitsi rtcstats-server on-disk dumps among the real fixtures.
JITSI_DUMPS = [
    "jitsi-chrome-standard-pc-failed.jsonl",
    "jitsi-chrome-standard-pc-reconnect.jsonl",
    "jitsi-firefox97-standard-stats-sfu.jsonl",
    "jitsi-google-standard-stats-sfu.jsonl",
    "jitsi-safari-standard-stats.jsonl",
    "jitsi-undefined-ice-candidate.jsonl",
]

#: An expected line starting with this matches a stored ``["identity", null, data, ts]``.
IDENTITY_PREFIX = "identity-object:"


def line_matches(stored: str, expected: str) -> bool:
    if expected.startswith(IDENTITY_PREFIX):
        entry = json.loads(stored)
        return bool(entry[:3] == ["identity", None, json.loads(expected[len(IDENTITY_PREFIX) :])])
    return stored == expected


@dataclass(frozen=True)
class Stream:
    name: str
    subprotocol: str
    path: str
    messages: list[str]
    #: The event lines the stored dump must hold, in order (as text).
    expected_lines: list[str]
    identity: dict[str, str]
    close_code: int = 1000


def captured(fixtures: Path, name: str) -> Stream:
    base = fixtures / "captured"
    meta = json.loads((base / f"{name}.meta.json").read_text())
    messages = [line for line in (base / f"{name}.ws.jsonl").read_text().splitlines() if line]
    expected: list[str] = []
    identity: dict[str, str] = {}
    for text in messages:
        message = json.loads(text)
        if isinstance(message, dict):
            if message["type"] == "stats-entry":
                expected.append(message["data"])
            elif message["type"] == "identity":
                expected.append(json.dumps(message["data"], separators=(",", ":")))
                identity = message["data"][2]
        else:
            expected.append(text)
            if message[0] == "identity":
                identity = message[2]
    code = meta["close_code"] if meta["close_code"] not in (1005, 1006) else 1000
    return Stream(name, meta["subprotocol"], meta["path"], messages, expected, identity, code)


def jitsi_disk_dump(fixtures: Path, name: str, session_id: str = "replay-1") -> Stream:
    lines = [line for line in (fixtures / "real" / name).read_text().splitlines() if line.strip()]
    info = json.loads(lines[0])
    assert info[0] == "connectionInfo"
    messages: list[str] = []
    expected: list[str] = []
    identity: dict[str, str] = {}
    for text in lines[1:]:
        entry = json.loads(text)
        if entry[0] == "identity":
            messages.append(
                json.dumps({"statsSessionId": session_id, "type": "identity", "data": entry})
            )
            expected.append(json.dumps(entry, separators=(",", ":")))
            identity = entry[2]
        else:
            messages.append(
                json.dumps({"statsSessionId": session_id, "type": "stats-entry", "data": text})
            )
            expected.append(text)
    path = f"/{name.removesuffix('.jsonl')}?statsSessionId={session_id}&isReconnect=false"
    return Stream(name, info[2]["clientProtocol"], path, messages, expected, identity, 3001)


def jvb_pusher(fixtures: Path) -> Stream:
    messages = [
        line
        for line in (fixtures / "real" / "jitsi-jvb-sample.jsonl").read_text().splitlines()
        if line.strip()
    ]
    expected: list[str] = []
    for text in messages:
        message = json.loads(text)
        if message["type"] == "stats-entry":
            expected.append(message["data"])
        else:  # the bare identity object is stored in the array form, stamped on arrival
            expected.append(IDENTITY_PREFIX + json.dumps(message["data"], separators=(",", ":")))
    identity = json.loads(messages[0])["data"]
    return Stream("jitsi-jvb-sample.jsonl", "3.1_JVB", "/jvb", messages, expected, identity)


def rtcstats_dump(fixtures: Path) -> Stream:
    lines = (fixtures / "real" / "rtcstats-gumonly.rtcstatsdump.jsonl").read_text().splitlines()
    meta = json.loads(lines[1])
    events = [line for line in lines[2:] if line and not line.startswith('["close"')]
    return Stream("rtcstats-gumonly", meta["clientProtocol"], meta["url"], events, events, {})
