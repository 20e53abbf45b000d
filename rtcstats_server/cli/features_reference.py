"""docs/features.md's list of features, generated from analysis/feature_list.py.

The file is prose written by hand (where features live, the score formulas, query
examples) around one generated part between two marker lines: the counts and one
table per level and section. ``python -m rtcstats_server.cli.features_reference``
rewrites that part and keeps the rest; a test fails when it is stale, so the list
users read is the list the code has.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from rtcstats_server.analysis.feature_list import (
    FEATURES,
    IDENTIFIERS,
    LEVELS,
    PEER_ROWS,
    SECTIONS,
    Feature,
    Level,
    by_level,
    peer_row_counts,
)

ROOT = Path(__file__).resolve().parents[2]
MARKDOWN_PATH = ROOT / "docs" / "features.md"
BEGIN: Final = (
    "<!-- BEGIN GENERATED (python -m rtcstats_server.cli.features_reference): "
    "edit rtcstats_server/analysis/feature_list.py, not this part -->"
)
END: Final = "<!-- END GENERATED -->"
_TITLES: Final[dict[Level, str]] = {
    "client": "Client features (one per session: `features.client`)",
    "connection": "Connection features (one per peer connection: `features.connections[]`)",
    "track": "Track features (one per sent or received track: `features.connections[].tracks[]`)",
}
_ROW: Final = re.compile(r"^\| `(?P<name>[a-z0-9_]+)` \|")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _row(feature: Feature) -> str:
    if feature.peer is not None:
        origin = f"`{feature.peer_row or feature.peer}`"
    elif (feature.level, feature.name) in IDENTIFIERS:
        origin = "ours (key)"
    else:
        origin = "ours"
    scope = f"*{feature.scope}:* " if feature.scope else ""
    return (
        f"| `{feature.name}` | {feature.type} | {_cell(feature.unit or '')} "
        f"| {scope}{_cell(feature.definition)} | {origin} |"
    )


def _counts() -> str:
    rows = peer_row_counts()
    names = sum(1 for f in FEATURES if f.peer is not None)
    ours = [f for f in FEATURES if f.peer is None and (f.level, f.name) not in IDENTIFIERS]
    beside = [f for f in ours if f.beside]
    return (
        f"{sum(rows.values())} features of the peer ({rows['client']} client, "
        f"{rows['connection']} connection, {rows['track']} track: the rows of its "
        f"features.md; {names} names, its `<kind>Ended` and `<kind>ShortDuration` rows "
        f"being one per kind), {len(ours)} of ours ({len(beside)} of them beside a peer "
        f"feature we judge wrong), and the keys `id` (connection) and `stats_id` (track)."
    )


def _tables() -> Iterator[str]:
    yield _counts()
    for level in LEVELS:
        yield ""
        yield f"## {_TITLES[level]}"
        features = by_level(level)
        for section in SECTIONS[level]:
            yield ""
            yield f"### {section}"
            yield ""
            yield "| feature | type | unit | definition | peer name |"
            yield "| --- | --- | --- | --- | --- |"
            yield from (_row(f) for f in features if f.section == section)
    yield ""
    yield "## Ours beside the peer's"
    yield ""
    yield (
        "Where we judge a peer definition wrong, its value stays under its name and ours "
        "is computed beside it:"
    )
    yield ""
    yield "| ours | the peer's | ours, and why |"
    yield "| --- | --- | --- |"
    for feature in FEATURES:
        if feature.beside:
            peers = ", ".join(f"`{name}`" for name in feature.beside)
            yield f"| `{feature.name}` | {peers} | {_cell(feature.definition)} |"


def generated() -> str:
    return "\n".join([BEGIN, "", *_tables(), "", END])


def render(text: str) -> str:
    """``text`` with its generated part replaced by the current one."""
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < begin:
        raise ValueError(f"{MARKDOWN_PATH.name}: the marker lines are missing or out of order")
    return text[:begin] + generated() + text[end + len(END) :]


def listed(text: str) -> list[tuple[Level, str]]:
    """(level, name) of every feature row of the generated tables, in order."""
    rows: list[tuple[Level, str]] = []
    level: Level | None = None
    for line in text[text.find(BEGIN) : text.find(END)].splitlines():
        for candidate in LEVELS:
            if line.startswith(f"## {_TITLES[candidate]}"):
                level = candidate
        if line.startswith("## Ours beside"):
            level = None
        match = _ROW.match(line)
        if match and level is not None:
            rows.append((level, match["name"]))
    return rows


def main() -> None:
    text = MARKDOWN_PATH.read_text(encoding="utf-8")
    MARKDOWN_PATH.write_text(render(text), encoding="utf-8")
    counts = peer_row_counts()
    if counts != PEER_ROWS:
        print(f"warning: peer rows {counts}, expected {PEER_ROWS}", file=sys.stderr)
    print(f"wrote {MARKDOWN_PATH}")


if __name__ == "__main__":
    main()
