"""deploy/: the compose stack an operator starts, its config, Prometheus and Grafana.

No container runs here, so the stack is checked for what can break without one:
the collector's YAML and environment pass ``check-config``, the pieces point at
each other (config path, ports, datasource, dashboards), and every metric the
dashboard queries exists in the ``/metrics`` of a running collector.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.test_image import DOCKERFILE, stages
from tests.services import streams
from tests.services.collector import RunningCollector

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "rtcstats-collector.json"
METRIC = re.compile(r"\brtcstats_[a-z0-9_]+\b")
#: Series suffixes by metric type (the exposition names, PromQL queries them).
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count", ""),
}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def interpolated(value: str) -> str:
    """compose's ``${NAME:-default}`` with NAME unset: the default."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def collector_env() -> dict[str, str]:
    env = compose()["services"]["collector"]["environment"]
    return {key: interpolated(str(value)) for key, value in env.items()}


def check_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RTCSTATS_")}
    return subprocess.run(
        [sys.executable, "-m", "rtcstats_server", "check-config", str(path)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_operator_config_and_compose_environment_pass_check_config(tmp_path: Path) -> None:
    env = collector_env()
    assert all(key.startswith("RTCSTATS_") for key in env)
    env["RTCSTATS_FORWARDERS__RTCSTATS_COM__TOKEN"] = "token-from-env"
    run = check_config(DEPLOY / "rtcstats-server.yaml", env)
    assert run.returncode == 0, run.stderr
    effective = yaml.safe_load(run.stdout)
    assert effective["metadata"]["backend"] == "mongodb"
    assert effective["storage"]["backend"] == "s3"
    assert effective["logging"]["format"] == "json"
    for secret in (env["RTCSTATS_STORAGE__SECRET_ACCESS_KEY"], "token-from-env"):
        assert secret not in run.stdout  # masked
    # the commented forwarder block is valid too, once an operator uncomments it
    text = (DEPLOY / "rtcstats-server.yaml").read_text()
    block = re.search(r"^# forwarders:\n(?:#.*\n?)+", text, re.MULTILINE)
    assert block is not None
    uncommented = re.sub(r"^# ?", "", block.group(0), flags=re.MULTILINE)
    edited = tmp_path / "edited.yaml"
    edited.write_text(text.replace(block.group(0), uncommented))
    run = check_config(edited, env)
    assert run.returncode == 0, run.stderr
    assert yaml.safe_load(run.stdout)["forwarders"]["rtcstats_com"]["token"] == "********"


def test_the_pieces_point_at_each_other() -> None:
    services = compose()["services"]
    config = yaml.safe_load((DEPLOY / "rtcstats-server.yaml").read_text())
    final = stages(DOCKERFILE.read_text())[-1]
    command = json.loads(final.last("CMD"))
    image_config = command[command.index("--config") + 1]

    collector = services["collector"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in collector["volumes"]}
    assert mounts[image_config] == "./rtcstats-server.yaml"
    assert "/data" in mounts and config["server"]["data_dir"] == "/data"
    port = config["server"]["port"]
    assert f"{port}:{port}" in collector["ports"]
    grace = collector["stop_grace_period"]
    assert float(grace.rstrip("s")) > config["server"]["shutdown_grace_s"]
    # the collector reaches the other services by their compose names
    assert "mongodb:27017" in collector_env()["RTCSTATS_METADATA__URI"]
    assert config["storage"]["endpoint"].startswith("http://seaweedfs:")
    seaweed = services["seaweedfs"]["command"]
    assert f"-bucket={config['storage']['bucket']}" in seaweed

    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]]  # fmt: skip
    assert targets == [f"collector:{port}"]

    grafana = services["grafana"]["volumes"]
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "rtcstats.yaml").read_text())
    (provider,) = providers["providers"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in grafana
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {
        target["datasource"]["uid"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }
    assert uids == {source["uid"]}


def dashboard_series() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    return {name for expr in exprs for name in METRIC.findall(expr)}


async def test_every_dashboard_metric_is_exposed(
    collector: RunningCollector, fixtures_dir: Path
) -> None:
    # Give the labelled series a value: one session, one refused upgrade.
    stream = streams.captured(fixtures_dir, "rtcstats-js-2.4.0-loopback-call")
    async with collector.http.ws_connect(
        collector.ws_url + stream.path, protocols=(stream.subprotocol,)
    ) as ws:
        for message in stream.messages:
            await ws.send_str(message)
    await collector.wait_for_record(lambda r: r["state"] == "stored")
    async with collector.http.get(
        collector.base_url + "/x", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                            "Sec-WebSocket-Version": "13",
                                            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                            "Sec-WebSocket-Protocol": "no-such-dialect"}
    ) as refused:  # fmt: skip
        assert refused.status == 400
    async with collector.http.get(collector.base_url + "/metrics") as response:
        text = await response.text()

    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    samples = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    exposed = {family + suffix for family, kind in families.items() for suffix in SUFFIXES[kind]}
    queried = dashboard_series()
    assert queried - exposed == set(), "the dashboard queries series /metrics lacks"
    # the panels an operator looks at first have data right away
    for series in (
        "rtcstats_connections_open",
        "rtcstats_connections_total",
        "rtcstats_messages_received_total",
        "rtcstats_sessions_finished_total",
        "rtcstats_connections_refused_total",
        "rtcstats_spool_bytes",
    ):
        assert series in queried and series in samples, series
    # and the list is covered: backlog and outcomes of uploads and forwarding
    for series in (
        "rtcstats_upload_backlog_files",
        "rtcstats_uploads_total",
        "rtcstats_forward_queue_jobs",
        "rtcstats_forward_uploads_total",
    ):
        assert series in queried, series
