"""``rtcstats-server features FILE``: a dump's features as JSON, for any dump we read."""

from __future__ import annotations

import json
from pathlib import Path

from rtcstats_server.analysis.features.extract import extract_features
from rtcstats_server.dumps.reader import open_dump
from tests.analysis.features.crafted import candidate, dump_bytes, event
from tests.services.cli import run_cli
from tests.services.maxmind import ASN_DB, CITY_DB, require_databases


async def test_prints_what_the_extractor_computes(fixtures_dir: Path) -> None:
    path = fixtures_dir / "real" / "jitsi-google-standard-stats-sfu.jsonl"
    ran = await run_cli("features", str(path))
    assert ran.code == 0, ran.err
    printed = json.loads(ran.out)
    reader = open_dump(path)
    assert printed == json.loads(json.dumps(extract_features(reader, reader.info)))
    assert printed["connections"][0]["ice_connected"] is True
    assert len(printed["connections"][0]["tracks"]) == 12


async def test_geo_databases_from_the_configuration(tmp_path: Path) -> None:
    """A dump that kept its addresses (masking off) is located with the configured
    databases."""
    require_databases()
    path = tmp_path / "unmasked.rtcstats"
    value = {"candidate": candidate("relay", "89.160.20.112", 5000)}
    path.write_bytes(dump_bytes([event("onicecandidate", "PC_0", value, 0)]))
    config = tmp_path / "config.yaml"
    config.write_text(f"geo:\n  city_db: {CITY_DB}\n  asn_db: {ASN_DB}\n")
    ran = await run_cli("features", str(path), "--config", str(config))
    assert ran.code == 0, ran.err
    connection = json.loads(ran.out)["connections"][0]
    assert connection["turn_location_city"] == "Linköping"
    assert connection["turn_location_asn"] == 29518
    without = json.loads((await run_cli("features", str(path))).out)["connections"][0]
    assert "turn_location_city" not in without


async def test_unreadable_inputs_exit_1_with_one_line(tmp_path: Path) -> None:
    missing = await run_cli("features", str(tmp_path / "nowhere.zst"))
    assert missing.code == 1 and len(missing.err_lines) == 1
    assert "cannot read" in missing.err
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    refused = await run_cli("features", str(junk))
    assert refused.code == 1 and refused.err_lines == [
        f"rtcstats-server: {junk}: not a dump we can read: the first line matches no known layout"
    ]


async def test_a_geo_file_that_is_no_database_names_its_key(tmp_path: Path) -> None:
    fake = tmp_path / "GeoLite2-City.mmdb"
    fake.write_bytes(b"not a database")
    config = tmp_path / "config.yaml"
    config.write_text(f"geo:\n  city_db: {fake}\n")
    ran = await run_cli("features", str(fake), "--config", str(config))
    assert ran.code == 2
    assert ran.err.startswith("rtcstats-server: configuration error: geo.city_db: ")
