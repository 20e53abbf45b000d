"""``check-config --connect``: one line per backend, exit 1 when any is unreachable."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.services.collector import RunningCollector, free_port
from tests.services.ferretdb import FerretDB


async def check_connect(cwd: Path, **env: str) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RTCSTATS_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rtcstats_server", "check-config", "--connect",
        env={**clean, **env}, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def lines(out: str) -> dict[str, str]:
    """The reachability lines after the printed config, by backend."""
    tail = out.split("# reachability\n", 1)[1]
    return {line.split()[0]: line for line in tail.splitlines()}


async def test_embedded_defaults_are_reachable(tmp_path: Path) -> None:
    code, out, err = await check_connect(tmp_path)
    assert code == 0, out + err
    found = lines(out)
    assert found["storage"].endswith(": ok") and "local" in found["storage"]
    assert found["metadata"].endswith(": ok") and "embedded" in found["metadata"]
    assert found["upstream"].endswith("skipped")


async def test_unreachable_mongodb_fails_naming_it(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    code, out, err = await check_connect(
        tmp_path,
        RTCSTATS_METADATA__BACKEND="mongodb",
        RTCSTATS_METADATA__URI=f"mongodb://ops:hunter2@127.0.0.1:{port}/",
        RTCSTATS_METADATA__TIMEOUT_S="1",
    )
    assert code == 1, out + err
    found = lines(out)
    assert found["metadata"].startswith(f"metadata  mongodb mongodb://127.0.0.1:{port} ")
    assert "FAILED" in found["metadata"] and str(port) in found["metadata"]
    assert found["storage"].endswith(": ok")  # the others are still checked
    assert "hunter2" not in out + err


async def test_reachable_mongodb_and_upstream(
    tmp_path: Path, ferretdb: FerretDB, collector: RunningCollector
) -> None:
    """A real MongoDB-wire server, and an upstream host that answers HTTP at all
    (a collector: its 404/405 to OPTIONS still proves the network path)."""
    code, out, err = await check_connect(
        tmp_path,
        RTCSTATS_METADATA__BACKEND="mongodb",
        RTCSTATS_METADATA__URI=ferretdb.uri,
        RTCSTATS_METADATA__DATABASE="check_connect",
        RTCSTATS_FORWARDERS__RTCSTATS_COM__ENDPOINT=collector.base_url + "/v1.0/upload",
        RTCSTATS_FORWARDERS__RTCSTATS_COM__TOKEN="secret-token",
    )
    assert code == 0, out + err
    found = lines(out)
    assert found["metadata"].endswith(": ok"), found
    assert found["upstream"] == f"upstream  rtcstats_com {collector.base_url}: ok"
    assert "secret-token" not in out


async def test_unreachable_upstream_fails(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}/v1.0/upload"
    code, out, _ = await check_connect(
        tmp_path,
        RTCSTATS_FORWARDERS__RTCSTATS_COM__ENDPOINT=endpoint,
        RTCSTATS_FORWARDERS__RTCSTATS_COM__TOKEN="t",
    )
    assert code == 1
    assert "FAILED" in lines(out)["upstream"]


async def test_unreachable_bucket_fails(tmp_path: Path) -> None:
    code, out, _ = await check_connect(
        tmp_path,
        RTCSTATS_STORAGE__BACKEND="s3",
        RTCSTATS_STORAGE__BUCKET="rtcstats-dumps",
        RTCSTATS_STORAGE__ENDPOINT=f"http://127.0.0.1:{free_port()}",
        RTCSTATS_STORAGE__REGION="us-east-1",
        RTCSTATS_STORAGE__ACCESS_KEY_ID="key",
        RTCSTATS_STORAGE__SECRET_ACCESS_KEY="bucket-secret",
    )
    assert code == 1
    storage = lines(out)["storage"]
    assert storage.startswith("storage   s3 bucket 'rtcstats-dumps' at http://127.0.0.1:")
    assert "FAILED" in storage and "bucket-secret" not in out
