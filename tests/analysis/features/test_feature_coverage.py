"""Every documented feature has a test with a known value.

The list is docs/features.md's, read from the generated tables themselves (so a
feature documented there and forgotten in the tests fails here, and the docs are
checked to be generated from feature_list.py by tests/analysis/test_feature_list.py).
A feature has a known value when the peer's recorded value for it is compared with
ours on a fixture (test_parity.py) or a crafted dump gives it a hand-worked value
(test_known_values.py).
"""

from __future__ import annotations

import re
from pathlib import Path

from rtcstats_server.analysis.feature_list import IDENTIFIERS, LEVELS, Level
from tests.analysis.features.test_known_values import crafted_known
from tests.analysis.features.test_parity import parity_known

DOCS = Path(__file__).resolve().parents[3] / "docs" / "features.md"
_ROW = re.compile(r"^\| `([a-z0-9_]+)` \|")


def documented() -> set[tuple[Level, str]]:
    """(level, name) of every row of the feature tables in docs/features.md."""
    found: set[tuple[Level, str]] = set()
    level: Level | None = None
    for line in DOCS.read_text().splitlines():
        if line.startswith("## "):
            level = next(
                (lv for lv in LEVELS if line.lower().startswith(f"## {lv} features")), None
            )
        elif level is not None and (match := _ROW.match(line)):
            found.add((level, match.group(1)))
    return found


def test_the_docs_list_every_level() -> None:
    levels = {level for level, _ in documented()}
    assert levels == set(LEVELS)
    assert len(documented()) >= 161 + 21


def test_every_documented_feature_has_a_known_value() -> None:
    known = parity_known() | set(crafted_known())
    missing = sorted(documented() - known - set(IDENTIFIERS))
    assert missing == []
