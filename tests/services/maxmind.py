"""MaxMind's test databases, fetched by scripts/install.d/50-maxmind-test-data.sh.

They come from the maxminddb source distribution on PyPI (a real GeoIP2 City and a
real GeoLite2 ASN file, with a few documented networks in them), so the geolocation
tests read real databases without a MaxMind account. Tests skip, saying how to get
them, only when the install step has not run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rtcstats_server.analysis.geo import GeoLocator, open_locator
from rtcstats_server.config import GeoConfig

TEST_DATA = Path(__file__).resolve().parents[1] / "data" / "test-data"
CITY_DB = TEST_DATA / "GeoIP2-City-Test.mmdb"
ASN_DB = TEST_DATA / "GeoLite2-ASN-Test.mmdb"


def require_databases() -> None:
    missing = [p.name for p in (CITY_DB, ASN_DB) if not p.is_file()]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} missing from tests/data/test-data: "
            "run bash scripts/install.d/50-maxmind-test-data.sh"
        )


def opened_locator() -> Iterator[GeoLocator]:
    """A locator on both test databases, closed after (a fixture's body)."""
    require_databases()
    opened = open_locator(GeoConfig(city_db=CITY_DB, asn_db=ASN_DB))
    assert opened is not None
    yield opened
    opened.close()
