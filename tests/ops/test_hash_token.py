"""``hash-token`` prints the ``api.tokens`` entry to paste; pasted as printed, it opens
the API of a real collector to that token (and only to it)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import aiohttp
import yaml

from tests.services.cli import run_cli
from tests.services.process import CollectorProcess


def pasted(snippet: str) -> str:
    """A configuration file with the snippet pasted under ``api.tokens``, as printed."""
    indented = "".join(f"    {line}\n" for line in snippet.splitlines())
    return "server:\n  host: 127.0.0.1\napi:\n  tokens:\n" + indented


async def test_the_printed_entry_pasted_into_the_config_opens_the_api(tmp_path: Path) -> None:
    token = "a-token-the-operator-already-has"
    ran = await run_cli("hash-token", "--name", "grafana", stdin=token + "\n")
    assert ran.code == 0, ran.err
    assert token not in ran.out  # only its hash
    assert yaml.safe_load(ran.out) == [
        {"name": "grafana", "sha256": hashlib.sha256(token.encode()).hexdigest(), "scope": "read"}
    ]
    config = tmp_path / "rtcstats-server.yaml"
    config.write_text(pasted(ran.out))
    checked = await run_cli("check-config", str(config))
    assert checked.code == 0, checked.err

    data = tmp_path / "data"
    server = CollectorProcess(
        data,
        command=[sys.executable, "-m", "rtcstats_server", "serve", "--config", str(config),
                 "--data-dir", str(data)],
    )  # fmt: skip
    server.start()
    try:
        async with aiohttp.ClientSession() as http:
            await server.wait_healthy(http)
            url = server.base_url + "/v1/sessions"
            async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
                assert response.status == 200, await response.text()
            async with http.get(url, headers={"Authorization": "Bearer another"}) as response:
                assert response.status == 401
    finally:
        server.kill()


async def test_generate_shows_the_token_once_in_comments() -> None:
    ran = await run_cli("hash-token", "--generate", "--name", "dash", "--scope", "admin")
    assert ran.code == 0, ran.err
    comments = [line for line in ran.out.splitlines() if line.startswith("#")]
    token = comments[2].removeprefix("#").strip()
    assert len(token) >= 40
    (entry,) = yaml.safe_load(ran.out)  # the comments do not get in the way of pasting
    assert entry == {
        "name": "dash",
        "sha256": hashlib.sha256(token.encode()).hexdigest(),
        "scope": "admin",
    }


async def test_no_token_and_bad_flags_are_refused() -> None:
    ran = await run_cli("hash-token", stdin="")
    assert ran.code == 2 and "give the token on stdin" in ran.err
    ran = await run_cli("hash-token", "--scope", "root", stdin="t\n")
    assert ran.code == 2 and "invalid choice: 'root'" in ran.err
