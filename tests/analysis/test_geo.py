"""Geolocation with MaxMind's own test databases: what is found, what is refused."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtcstats_server.analysis.geo import GeoLocator, Location, open_locator, public_address
from rtcstats_server.config import GeoConfig, build_config
from rtcstats_server.exceptions import ConfigError
from tests.services.maxmind import ASN_DB, CITY_DB, opened_locator, require_databases

# What the test databases (maxminddb 3.2.0's tests/data/test-data) hold, found by
# walking them: 89.160.20.112/28 is Linköping (SE) in the City file and AS29518
# "Bredband2 AB" in the ASN file; 81.2.69.142/31 is London (GB) with no ASN record;
# 1.128.0.0/11 is only in the ASN file (AS1221 Telstra); 2001:480:10::/48 is San
# Diego (US); 2a02:ffc0::/29 is Gibraltar with no city.
LINKOPING = Location(
    continent="Europe",
    country="Sweden",
    country_code="SE",
    city="Linköping",
    asn=29518,
    organization="Bredband2 AB",
)


@pytest.fixture(scope="module")
def locator() -> Iterator[GeoLocator]:
    yield from opened_locator()


def test_a_public_address_gets_place_and_autonomous_system(locator: GeoLocator) -> None:
    found = locator.lookup("89.160.20.115")
    assert found == LINKOPING
    assert found.fields() == {
        "continent": "Europe",
        "country": "Sweden",
        "country_code": "SE",
        "city": "Linköping",
        "asn": 29518,
        "organization": "Bredband2 AB",
    }


@pytest.mark.parametrize(
    "written",
    ["89.160.20.115", " 89.160.20.115 ", "::ffff:89.160.20.115", "[::ffff:89.160.20.115]"],
)
def test_address_spellings_of_candidates_and_headers(locator: GeoLocator, written: str) -> None:
    assert locator.lookup(written) == LINKOPING


def test_each_database_answers_for_what_it_knows(locator: GeoLocator) -> None:
    london = locator.lookup("81.2.69.142")
    assert london == Location("Europe", "United Kingdom", "GB", "London", None, None)
    telstra = locator.lookup("1.128.0.1")
    assert telstra == Location(asn=1221, organization="Telstra Pty Ltd")
    san_diego = locator.lookup("2001:480:10::1")
    assert san_diego is not None and san_diego.city == "San Diego"
    assert san_diego.country_code == "US" and san_diego.continent == "North America"
    gibraltar = locator.lookup("2a02:ffc0::7")
    assert gibraltar is not None and gibraltar.country == "Gibraltar" and gibraltar.city is None


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",  # public, in neither test database
        "192.168.1.20",
        "10.0.0.1",
        "172.16.5.4",
        "127.0.0.1",
        "100.64.0.1",  # shared address space (CGNAT)
        "169.254.1.1",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.251",
        "::1",
        "::",
        "fe80::1%eth0",
        "fd00::1",
        "ff02::fb",
        "2001:db8::1",  # documentation range
        "4b8e5a5c-05a4-4a6a-8ab9-2a6e2c1b36d1.local",  # an mDNS candidate
        "89.160.20.x",  # masked
        "89.160.20",
        "",
        "not an address",
        "1" * 200,
    ],
)
def test_anything_but_a_known_public_address_is_none(locator: GeoLocator, address: str) -> None:
    assert locator.lookup(address) is None


@pytest.mark.parametrize("value", [None, 42, 3.5, b"89.160.20.115", ["89.160.20.115"], {}])
def test_non_strings_are_none(locator: GeoLocator, value: object) -> None:
    assert public_address(value) is None
    assert locator.lookup(value) is None


@settings(
    max_examples=1500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.text(max_size=80)
    | st.ip_addresses().map(str)
    | st.ip_addresses().map(lambda a: f"[{a}]%x")
    | st.binary(max_size=40).map(lambda b: b.decode("latin-1"))
)
def test_lookups_never_raise(locator: GeoLocator, text: str) -> None:
    found = locator.lookup(text)
    assert found is None or (isinstance(found, Location) and found.fields())


def test_one_database_alone(tmp_path: Path) -> None:
    require_databases()
    only_asn = open_locator(GeoConfig(asn_db=ASN_DB))
    assert only_asn is not None
    assert only_asn.lookup("89.160.20.115") == Location(asn=29518, organization="Bredband2 AB")
    only_asn.close()
    only_city = open_locator(GeoConfig(city_db=CITY_DB))
    assert only_city is not None
    found = only_city.lookup("89.160.20.115")
    assert found is not None and found.city == "Linköping" and found.asn is None
    only_city.close()


def test_off_when_unset() -> None:
    assert open_locator(build_config(environ={}).geo) is None
    assert build_config(environ={"RTCSTATS_GEO__CITY_DB": ""}).geo.city_db is None


def test_a_missing_file_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        build_config({"geo": {"city_db": str(tmp_path / "GeoLite2-City.mmdb")}}, environ={})
    assert raised.value.key == "geo.city_db" and "not a readable file" in raised.value.problem
    with pytest.raises(ConfigError) as raised:
        build_config(environ={"RTCSTATS_GEO__ASN_DB": str(tmp_path)})  # a directory
    assert raised.value.key == "geo.asn_db" and "RTCSTATS_GEO__ASN_DB" in raised.value.problem


def test_a_file_that_is_not_a_database_of_its_kind_is_refused_at_open(tmp_path: Path) -> None:
    require_databases()
    with pytest.raises(ConfigError) as raised:
        open_locator(GeoConfig(city_db=ASN_DB))  # the ASN file where the city one goes
    assert raised.value.key == "geo.city_db" and "GeoLite2-ASN" in raised.value.problem
    junk = tmp_path / "GeoLite2-ASN.mmdb"
    junk.write_bytes(b"<html>403 Forbidden</html>\n" * 40)  # a failed download
    with pytest.raises(ConfigError) as raised:
        open_locator(GeoConfig(city_db=CITY_DB, asn_db=junk))
    assert raised.value.key == "geo.asn_db" and "not a MaxMind database" in raised.value.problem
    truncated = tmp_path / "GeoIP2-City.mmdb"
    truncated.write_bytes(CITY_DB.read_bytes()[:5000])
    with pytest.raises(ConfigError) as raised:
        open_locator(GeoConfig(city_db=truncated))
    assert raised.value.key == "geo.city_db"


def test_check_config_reports_a_bad_database_path(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"geo:\n  city_db: {tmp_path / 'nowhere.mmdb'}\n")
    done = subprocess.run(
        [sys.executable, "-m", "rtcstats_server", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "geo.city_db: not a readable file" in done.stderr
