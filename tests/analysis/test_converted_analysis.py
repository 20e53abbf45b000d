"""A session converted to fileFormat 3 (``?format=rtcstats``, ``convert --to rtcstats``)
analyses as the original does: the same quality summary and the same features, so what
a user computes on the download (or rtcstats.com on the upload) is what we computed."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from rtcstats_server.analysis.features.extract import extract_features
from rtcstats_server.analysis.summary import summarize_file
from rtcstats_server.config import Config
from rtcstats_server.dumps.encode import write_rtcstats
from rtcstats_server.dumps.reader import DumpReader, open_dump
from tests.dumps.test_encode import SOURCES


def as_json(value: Any) -> Any:
    """NaN compares equal to itself once written as JSON text."""
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("name", SOURCES)
def test_the_same_summary(fixtures_dir: Path, tmp_path: Path, name: str) -> None:
    source = fixtures_dir / name
    target = tmp_path / "converted.rtcstats"
    with target.open("wb") as out:
        write_rtcstats(source, out)
    quality = Config().quality
    before, after = summarize_file(source, quality), summarize_file(target, quality)
    # What the file is (its layout, dialect, event count) is the only difference.
    assert after["dump"]["layout"] == "rtcstats-dump"
    before.pop("dump")
    after.pop("dump")
    assert as_json(after) == as_json(before)


@pytest.mark.parametrize("name", SOURCES)
def test_the_same_features(fixtures_dir: Path, name: str) -> None:
    source = fixtures_dir / name
    out = io.BytesIO()
    result = write_rtcstats(source, out, id_maps=True)
    reader = open_dump(source)
    before = extract_features(reader, reader.info)
    converted = DumpReader([out.getvalue()])
    after = extract_features(converted, converted.info)
    if result is not None:  # stats ids were renamed "0", "1"...: name them as before
        for connection in after["connections"]:
            ids = result.id_maps.get(connection["id"], {})
            original = {short: long for long, short in ids.items()}
            for track in connection["tracks"]:
                track["stats_id"] = original.get(track["stats_id"], track["stats_id"])
    assert as_json(after) == as_json(before)
