"""``rtcstats-server convert FILE --to rtcstats``: any dump as rtcstats fileFormat 3, on
standard output or in ``-o FILE``."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

from rtcstats_server.dumps.encode import write_rtcstats
from rtcstats_server.dumps.reader import DumpReader
from tests.services.cli import run_cli


def converted(path: Path) -> bytes:
    out = io.BytesIO()
    write_rtcstats(path, out)
    return out.getvalue()


async def test_a_jitsi_dump_on_standard_output(fixtures_dir: Path) -> None:
    path = fixtures_dir / "real" / "jitsi-safari-standard-stats.jsonl"
    ran = await run_cli("convert", str(path), "--to", "rtcstats")
    assert ran.code == 0, ran.err
    assert ran.out.encode() == converted(path)
    reader = DumpReader([ran.out.encode()], strict=True)
    assert reader.info.metadata["fileFormat"] == 3 and reader.info.scheme == "rtcstats-js"
    assert sum(1 for e in reader if e.is_stats) == 82


async def test_a_compressed_capture_into_a_file(fixtures_dir: Path, tmp_path: Path) -> None:
    """A 2.0 client stream, gzipped: read whatever the compression, written plain."""
    source = fixtures_dir / "captured" / "rtcstats-5.2.0-loopback-call.ws.jsonl"
    packed = tmp_path / "capture.jsonl.gz"
    packed.write_bytes(gzip.compress(source.read_bytes()))
    target = tmp_path / "out" / "capture.rtcstats"
    target.parent.mkdir()
    ran = await run_cli("convert", str(packed), "--to", "rtcstats", "-o", str(target))
    assert ran.code == 0, ran.err
    assert ran.out == ""
    assert target.read_bytes() == converted(source)
    assert os.listdir(target.parent) == ["capture.rtcstats"]  # no leftovers


async def test_an_rtcstats_dump_comes_out_as_it_is(fixtures_dir: Path, tmp_path: Path) -> None:
    path = fixtures_dir / "real" / "rtcstats-gumonly.rtcstatsdump.jsonl"
    target = tmp_path / "same.rtcstats"
    ran = await run_cli("convert", str(path), "--to", "rtcstats", "--output", str(target))
    assert ran.code == 0, ran.err
    assert target.read_bytes() == path.read_bytes()


async def test_unreadable_inputs_exit_1_and_leave_no_file(tmp_path: Path) -> None:
    target = tmp_path / "out.rtcstats"
    missing = await run_cli(
        "convert", str(tmp_path / "nowhere"), "--to", "rtcstats", "-o", str(target)
    )
    assert missing.code == 1 and len(missing.err_lines) == 1 and "nowhere" in missing.err
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    refused = await run_cli("convert", str(junk), "--to", "rtcstats", "-o", str(target))
    assert refused.code == 1 and len(refused.err_lines) == 1
    assert "not a dump we can read" in refused.err
    assert os.listdir(tmp_path) == [junk.name]


async def test_the_target_format_is_required(fixtures_dir: Path) -> None:
    path = fixtures_dir / "real" / "jitsi-safari-standard-stats.jsonl"
    assert (await run_cli("convert", str(path))).code == 2
    assert (await run_cli("convert", str(path), "--to", "csv")).code == 2
