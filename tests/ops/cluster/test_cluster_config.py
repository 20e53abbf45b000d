"""server.cluster refuses backends that one host keeps to itself, naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rtcstats_server.config import build_config
from rtcstats_server.exceptions import ConfigError


def test_cluster_with_local_storage_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"storage\.backend: local"):
        build_config({"server": {"cluster": True}}, environ={})


def test_cluster_with_the_embedded_store_is_refused_naming_the_key() -> None:
    tree = {"server": {"cluster": True}, "storage": {"backend": "s3", "bucket": "b"}}
    with pytest.raises(ConfigError, match=r"metadata\.backend: embedded"):
        build_config(tree, environ={})


def test_check_config_refuses_a_cluster_on_local_storage(tmp_path: Path) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text("server:\n  cluster: true\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "rtcstats_server", "check-config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "storage.backend" in result.stderr and "server.cluster" in result.stderr
