"""The view-model cache's disk bound, and the dump readers a viewer starts: they stop
when their reader leaves and never outlive the request."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from rtcstats_server.http.viewer.cache import prune
from tests.services.collector import RunningCollector, wait_until
from tests.services.stored_dumps import store_dump_file


def test_prune_deletes_the_least_recently_viewed_beyond_the_bound(tmp_path: Path) -> None:
    for age, name in enumerate(["new", "mid", "old", "oldest"]):
        path = tmp_path / f"{name}.v1.b300.json.zst"
        path.write_bytes(b"x" * 1000)
        stamp = 1_700_000_000 - age * 3600
        os.utime(path, (stamp, stamp))
    (tmp_path / "unrelated.txt").write_bytes(b"y" * 5000)
    assert prune(tmp_path, 2500) == 2
    assert sorted(p.name.split(".")[0] for p in tmp_path.glob("*.json.zst")) == ["mid", "new"]
    assert (tmp_path / "unrelated.txt").exists()
    assert prune(tmp_path, 2500) == 0


def _readers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "viewer-dump-reader")


def long_dump(fixtures: Path, target: int, path: Path) -> None:
    """A real SFU call's getStats repeated with shifted times until ``target`` bytes."""
    lines = (fixtures / "real" / "jitsi-google-standard-stats-sfu.jsonl").read_text().splitlines()
    stats = [json.loads(line) for line in lines if line.startswith('["getstats"')]
    span = stats[-1][3] - stats[0][3] + 1000
    size = 0
    with path.open("w") as out:
        for line in lines:
            out.write(line + "\n")
        round_ = 1
        while size < target:
            for entry in stats:
                text = json.dumps([entry[0], entry[1], entry[2], entry[3] + round_ * span])
                out.write(text + "\n")
                size += len(text) + 1
            round_ += 1


async def test_a_download_left_early_stops_its_reader(
    collector: RunningCollector, fixtures_dir: Path, tmp_path: Path
) -> None:
    dump = tmp_path / "long.jsonl"
    long_dump(fixtures_dir, 30_000_000, dump)
    session_id = await store_dump_file(collector, dump)
    url = (await collector.get_json(f"/v1/sessions/{session_id}"))["viewer_url"]
    base, query = url.split("?", 1)
    async with collector.http.get(f"{base}/samples.jsonl?{query}") as response:
        assert response.status == 200
        first = await response.content.readline()
        assert json.loads(first)["t"] > 0
        assert _readers() == 1
        response.close()  # the user cancelled the download
    await wait_until(lambda: _readers() == 0, timeout=20, what="the dump reader to stop")
    # and the server is fine: the same download, read to the end
    async with collector.http.get(f"{base}/samples.jsonl?{query}&from=0&to=1") as response:
        assert response.status == 200
        assert await response.read() == b""
