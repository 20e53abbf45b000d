"""Every documented feature has a test with a known value.

The list is docs/features.md's, read from its feature tables (``features_reference.
listed``), so a feature documented there and forgotten in the tests fails here; that
the tables are generated from feature_list.py is tests/analysis/test_feature_list.py's.
A feature has a known value when the peer's recorded value for it is compared with
ours on a fixture (test_parity.py) or a crafted dump gives it a hand-worked value
(test_known_values.py).
"""

from __future__ import annotations

from rtcstats_server.analysis.feature_list import IDENTIFIERS, LEVELS
from rtcstats_server.cli.features_reference import MARKDOWN_PATH, listed
from tests.analysis.features.test_known_values import crafted_known
from tests.analysis.features.test_parity import parity_known


def test_the_docs_list_every_level() -> None:
    documented = listed(MARKDOWN_PATH.read_text(encoding="utf-8"))
    assert {level for level, _ in documented} == set(LEVELS)
    assert len(documented) >= 163 + 21


def test_every_documented_feature_has_a_known_value() -> None:
    documented = set(listed(MARKDOWN_PATH.read_text(encoding="utf-8")))
    known = parity_known() | set(crafted_known())
    assert sorted(documented - known - set(IDENTIFIERS)) == []
