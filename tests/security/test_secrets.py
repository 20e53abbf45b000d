"""Secrets never reach logs, errors or check-config output: a collector configured
with every kind of secret serves a session (with a client token) and stops while all
its log records are captured; none may contain a secret, nor may check-config."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import jwt
import pytest
import yaml

from tests.services.collector import run_collector

SECRETS = {
    "jwt": "jwt-secret-that-must-stay-hidden-0123456789",
    "mongo": "mongo-password-hidden-42",
    "upstream": "upstream-token-hidden-42",
    "s3": "s3-secret-key-hidden-42",
}


def settings() -> dict[str, dict[str, object]]:
    return {
        "auth": {"jwt_secret": SECRETS["jwt"]},
        "forwarders": {
            "rtcstats_com": {"token": SECRETS["upstream"], "endpoint": "http://127.0.0.1:9/"}
        },
        "logging": {"level": "DEBUG"},
    }


async def test_no_secret_in_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = jwt.encode({"exp": time.time() + 60, "rtcStats": {"user": "u"}}, SECRETS["jwt"])
    async with run_collector(tmp_path / "data", settings()) as c:
        async with c.http.ws_connect(
            c.ws_url + f"/room?rtcstats-token={token}", protocols=("2.0",)
        ) as ws:
            await ws.send_str('["create","PC_0",{},1]')
            await ws.close()
        await c.wait_for_record(lambda r: r["state"] == "stored")
        with pytest.raises(aiohttp.WSServerHandshakeError):  # refused, and logged nowhere
            await c.http.ws_connect(
                c.ws_url + "/room?rtcstats-token=" + token[:-4] + "AAAA", protocols=("2.0",)
            )
    text = "\n".join(record.getMessage() + str(record.exc_info or "") for record in caplog.records)
    assert caplog.records
    for secret in [*SECRETS.values(), token]:
        assert secret not in text


def test_check_config_masks_every_secret(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    tree = settings()
    tree["metadata"] = {"backend": "mongodb", "uri": f"mongodb://u:{SECRETS['mongo']}@db/"}
    tree["storage"] = {
        "backend": "s3",
        "bucket": "b",
        "access_key_id": "AKIAHIDDEN",
        "secret_access_key": SECRETS["s3"],
    }
    config.write_text(yaml.safe_dump(tree))
    done = subprocess.run(
        [sys.executable, "-m", "rtcstats_server", "check-config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for secret in [*SECRETS.values(), "AKIAHIDDEN"]:
        assert secret not in done.stdout + done.stderr
    # A bad value next to a secret: the error names the key, never the secret.
    tree["auth"]["jwt_secret"] = "short"  # type: ignore[index]
    config.write_text(yaml.safe_dump(tree))
    done = subprocess.run(
        [sys.executable, "-m", "rtcstats_server", "check-config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert "auth" in done.stderr and "short" not in done.stderr.replace("too short", "")
