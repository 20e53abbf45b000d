"""``check-config`` (and ``serve``) report every configuration error of a run at once,
in an operator's words: the key, the value, the variable that set it, the key that
was meant, never pydantic's class names; ``--print-defaults`` lists every key."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from rtcstats_server.cli.config_reference import YAML_PATH
from rtcstats_server.config import build_config
from tests.services.cli import run_cli

#: A file with nine mistakes, and two more in the environment.
BAD_FILE = """\
server:
  prot: 9000
  port: many
servers: {}
dumps:
  zstd_level: 40
forwarders: 5
auth:
  jwt_secret: 31415926535897932384626
api:
  tokens: [5, {nme: ops, sha256: not-hex}]
"""
BAD_ENV = {
    "RTCSTATS_INGEST__MAX_MESSAGE_BYTSE": "2048",
    "RTCSTATS_LOGGING__LEVEL": "LOUD",
}
#: The lines one run must print: fields in the model's key order, each section's
#: unknown keys after its fields (pydantic checks those last).
EXPECTED = [
    "rtcstats-server: 11 configuration errors:",
    "  server.port: should be a valid integer, unable to parse string as an integer (got 'many')",
    "  server.prot: unknown key; did you mean `port`?",
    "  ingest.max_message_bytse: unknown key (from RTCSTATS_INGEST__MAX_MESSAGE_BYTSE); "
    "did you mean `max_message_bytes` (RTCSTATS_INGEST__MAX_MESSAGE_BYTES)?",
    "  dumps.zstd_level: should be less than or equal to 19 (got 40)",
    "  logging.level: should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR' "
    "(got 'LOUD'; from RTCSTATS_LOGGING__LEVEL)",
    "  forwarders: should be a mapping of keys (`rtcstats_com`) (got 5)",
    "  auth.jwt_secret: should be a valid string",  # a secret's value is never echoed
    "  api.tokens.0: should be a mapping of keys (`name`, `sha256`, `scope`) (got 5)",
    "  api.tokens.1.sha256: should match pattern '^[0-9a-f]{64}$' (got 'not-hex')",
    "  api.tokens.1.nme: unknown key; did you mean `name`?",
    "  servers: unknown key; did you mean `server`?",
]
#: What pydantic says in its own words, or names of our classes: never shown.
INTERNALS = re.compile(
    r"[A-Za-z]+Config\b|ApiToken|SecretStr|pydantic|<class|Value error|Extra inputs|Traceback"
)


async def test_every_error_in_one_run(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(BAD_FILE)
    ran = await run_cli("check-config", str(config), env=BAD_ENV)
    assert ran.code == 2 and ran.out == ""
    assert ran.err_lines == EXPECTED
    assert not INTERNALS.search(ran.err) and "31415926535897932384626" not in ran.err


async def test_an_unknown_key_far_from_any_points_to_the_shipped_defaults(tmp_path: Path) -> None:
    ran = await run_cli("check-config", env={"RTCSTATS_SERVER__QQQQQQ": "1"}, cwd=tmp_path)
    assert ran.code == 2
    line = (
        "rtcstats-server: configuration error: server.qqqqqq: unknown key "
        "(from RTCSTATS_SERVER__QQQQQQ); `rtcstats-server check-config --print-defaults` "
        "lists every key"
    )
    assert ran.err_lines == [line]
    # and the command it names works, from anywhere
    shown = await run_cli("check-config", "--print-defaults", cwd=tmp_path)
    assert shown.code == 0, shown.err
    assert "  qqqqqq" not in shown.out and "\n  port: 8080\n" in shown.out


async def test_print_defaults_is_the_commented_reference(tmp_path: Path) -> None:
    ran = await run_cli("check-config", "--print-defaults", cwd=tmp_path)
    assert ran.code == 0, ran.err
    assert ran.out == YAML_PATH.read_text()  # the file shipped in config/ (a test keeps it current)
    assert build_config(yaml.safe_load(ran.out), environ={}) == build_config(environ={})
    assert "# Public port: ingest, API, health. (integer; env RTCSTATS_SERVER__PORT)" in ran.out


async def test_serve_gives_the_same_report(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(BAD_FILE)
    checked = await run_cli("check-config", str(config), env=BAD_ENV)
    served = await run_cli(
        "serve", "--config", str(config), "--data-dir", str(tmp_path / "data"), env=BAD_ENV
    )
    assert served.code == 2 and served.err == checked.err
    assert not (tmp_path / "data").exists()  # nothing was started
