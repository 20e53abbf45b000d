"""The spool cap counts live dumps (measured) and the outbox (exact)."""

from __future__ import annotations

from pathlib import Path

from rtcstats_server.storage.outbox import Outbox
from rtcstats_server.storage.spool import Spool


async def test_live_and_queued_bytes_both_count_towards_the_cap(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    outbox = Outbox(tmp_path / "outbox")
    spool = Spool(live, max_bytes=1500, outbox=outbox)
    (live / "a.rtcstats.zst").write_bytes(b"x" * 1000)
    await spool.measure()
    assert spool.used_bytes == 1000
    assert not spool.full

    finished = live / "b.rtcstats.zst"
    finished.write_bytes(b"y" * 600)
    await outbox.add("2024/05/17/b.rtcstats.zst", finished)  # counted at once, no measuring
    assert spool.used_bytes == 1600
    assert spool.full

    await outbox.remove(outbox.entries["2024/05/17/b.rtcstats.zst"])
    assert not spool.full


async def test_a_restart_finds_complete_entries_and_drops_torn_ones(tmp_path: Path) -> None:
    source = tmp_path / "dump.zst"
    source.write_bytes(b"zstd frames")
    first = Outbox(tmp_path / "outbox")
    entry = await first.add("p/2024/05/17/abc.rtcstats.zst", source)
    assert entry.session_id == "abc"
    orphan = entry.sidecar.with_name("p%2Fgone.rtcstats.zst.json")
    orphan.write_bytes(entry.sidecar.read_bytes().replace(b"abc", b"gone"))  # no data file
    (tmp_path / "outbox" / "cut.json.tmp").write_bytes(b"{")

    again = Outbox(tmp_path / "outbox")
    found = await again.scan()
    assert [e.key for e in found] == ["p/2024/05/17/abc.rtcstats.zst"]
    assert found[0].sha256 == entry.sha256 and again.bytes == len(b"zstd frames")
    assert sorted(p.name for p in (tmp_path / "outbox").iterdir()) == sorted(
        [entry.data.name, entry.sidecar.name]
    )
