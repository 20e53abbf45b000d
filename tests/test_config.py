"""Configuration: defaults, YAML, environment overrides, and errors that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rtcstats_server.config import build_config, load_config
from rtcstats_server.exceptions import ConfigError


def test_defaults_need_no_file() -> None:
    config = build_config(environ={})
    assert config.server.port == 8080
    assert config.server.data_dir == Path("./data")
    assert config.storage.backend == "local" and config.metadata.backend == "embedded"
    assert config.ingest.max_message_bytes == 1 << 20
    assert config.ingest.resume_grace_s == 120 and config.ingest.idle_timeout_s == 60
    assert config.ingest.permessage_deflate is False


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  port: 9000\n  host: 127.0.0.1\ndumps:\n  zstd_level: 5\n")
    config = load_config(
        path, environ={"RTCSTATS_SERVER__PORT": "9100", "RTCSTATS_TEST_MONGODB_URI": "ignored"}
    )
    assert config.server.port == 9100 and config.server.host == "127.0.0.1"
    assert config.dumps.zstd_level == 5


@pytest.mark.parametrize(
    ("yaml_text", "environ", "key", "words"),
    [
        ("server:\n  prot: 1\n", {}, "server.prot", "unknown key"),
        ("servers: {}\n", {}, "servers", "unknown key"),
        ("server:\n  port: many\n", {}, "server.port", "integer"),
        ("", {"RTCSTATS_INGEST__MAX_MESSAGE_BYTES": "10"}, "ingest.max_message_bytes", "1024"),
        ("", {"RTCSTATS_INGEST__NOPE": "1"}, "ingest.nope", "unknown key"),
        ("dumps:\n  zstd_level: 40\n", {}, "dumps.zstd_level", "19"),
    ],
)
def test_errors_name_the_key(
    tmp_path: Path, yaml_text: str, environ: dict[str, str], key: str, words: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ=environ)
    assert raised.value.key == key and words in raised.value.problem


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, environ={})
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad, environ={})


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtcstats_server", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_check_config_prints_effective_config_and_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("server:\n  port: 9001\n")
    result = run_cli("check-config", str(good))
    assert result.returncode == 0, result.stderr
    assert "port: 9001" in result.stdout and "data_dir: data" in result.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest:\n  idle_timeout_s: -1\n")
    result = run_cli("check-config", str(bad))
    assert result.returncode == 2
    assert "ingest.idle_timeout_s" in result.stderr


def test_shipped_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[1] / "config" / "rtcstats-server.yaml"
    config = load_config(example, environ={})
    assert config == build_config(environ={})  # it lists the defaults, nothing else


def test_lists_come_from_the_environment_as_yaml() -> None:
    config = build_config(environ={"RTCSTATS_FORWARDERS__RTCSTATS_COM__APPS": "[web, mobile]"})
    assert config.forwarders.rtcstats_com.apps == ["web", "mobile"]


def test_generated_reference_files_are_current() -> None:
    from rtcstats_server.cli import config_reference

    assert config_reference.YAML_PATH.read_text() == config_reference.render_yaml(), (
        "config/rtcstats-server.yaml is stale: run python -m rtcstats_server.cli.config_reference"
    )
    assert config_reference.MARKDOWN_PATH.read_text() == config_reference.render_markdown(), (
        "docs/configuration.md is stale: run python -m rtcstats_server.cli.config_reference"
    )
    documented = config_reference.MARKDOWN_PATH.read_text()
    for key in config_reference.keys():
        assert f"`{key.env}`" in documented


def test_secrets_are_masked_by_check_config(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("forwarders:\n  rtcstats_com:\n    token: super-secret-token-42\n")
    result = run_cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "super-secret-token-42" not in result.stdout and "********" in result.stdout


def test_renamed_section_still_reads_with_a_warning(tmp_path: Path) -> None:
    """``upload`` became ``uploads``: files and environments written for the old name
    keep working, and check-config says what to rename."""
    old = tmp_path / "old.yaml"
    old.write_text("upload:\n  max_bytes: 5000\n  concurrency: 3\n")
    config = load_config(old, environ={"RTCSTATS_UPLOAD__MAX_EVENTS": "7"})
    assert (config.uploads.max_bytes, config.uploads.concurrency) == (5000, 3)
    assert config.uploads.max_events == 7
    both = build_config({"upload": {"max_bytes": 5000}, "uploads": {"max_bytes": 6000}}, {})
    assert both.uploads.max_bytes == 6000  # the new name wins
    result = run_cli("check-config", str(old))
    assert result.returncode == 0, result.stderr
    assert "uploads:" in result.stdout and "max_bytes: 5000" in result.stdout
    assert "'upload' is deprecated, rename it to 'uploads'" in result.stderr
    with pytest.raises(ConfigError) as raised:
        build_config({"upload": 3, "uploads": {}}, {})
    assert raised.value.key == "upload"
