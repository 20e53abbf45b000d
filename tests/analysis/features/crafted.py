"""Crafted dumps for feature tests: a list of events in, the features out.

The layout is an rtcstats dump of the jitsi 3.1 dialect (absolute times, full method
names, getStats reports by their full names, every live report in each result), the
simplest to write by hand and read back through the real reader.
"""

from __future__ import annotations

import json
from typing import Any

from rtcstats_server.analysis.features.extract import extract_features
from rtcstats_server.analysis.geo import GeoLocator
from rtcstats_server.dumps.reader import DumpReader

#: When the crafted sessions start (epoch ms).
T0 = 1_700_000_000_000


def dump_bytes(events: list[list[Any]], meta: dict[str, Any] | None = None) -> bytes:
    header = {"fileFormat": 2, "clientProtocol": "3.1_STANDARD", **(meta or {})}
    lines = ["RTCStatsDump", json.dumps(header), *(json.dumps(e) for e in events)]
    return ("\n".join(lines) + "\n").encode()


def features_of(
    events: list[list[Any]],
    meta: dict[str, Any] | None = None,
    locator: GeoLocator | None = None,
) -> dict[str, Any]:
    reader = DumpReader([dump_bytes(events, meta)], strict=True)
    return extract_features(reader, reader.info, locator)


def event(method: str, pc: str | None, value: Any, at: float, *extra: Any) -> list[Any]:
    """``[method, pc, value, time]`` (plus a 3.1 seq and ``extra`` when given)."""
    line: list[Any] = [method, pc, value, T0 + at]
    if extra:
        line += [len(extra), *extra]  # a seq, then what the reader puts in ``extra``
    return line


def stats(pc: str, at: float, *reports: dict[str, Any]) -> list[Any]:
    """A getStats result holding ``reports`` (each with its ``id``), all at ``at``."""
    value: dict[str, Any] = {"timestamp": T0 + at}
    for report in reports:
        value[report["id"]] = {**report, "timestamp": T0 + at}
    return ["getstats", pc, value, T0 + at]


def candidate(kind: str, address: str, port: int, protocol: str = "udp", **more: str) -> str:
    """An ICE candidate line (``candidate:…``)."""
    priority = {"host": 2122260223, "srflx": 1686052607, "relay": 41885439}[kind]
    extra = "".join(f" {key} {value}" for key, value in more.items())
    return f"candidate:1 1 {protocol} {priority} {address} {port} typ {kind}{extra}"


def connection(features: dict[str, Any], pc_id: str = "PC_0") -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in features["connections"] if c["id"] == pc_id)
    return found


def track(features: dict[str, Any], stats_id: str, pc_id: str = "PC_0") -> dict[str, Any]:
    found: dict[str, Any] = next(
        t for t in connection(features, pc_id)["tracks"] if t["stats_id"] == stats_id
    )
    return found
