"""deploy/cluster and deploy/kubernetes: the balancer examples and the Kubernetes
collectors are checked for what can break without running them: HAProxy's own
``-c`` accepts the config, the Kubernetes environment builds a cluster config that
check-config accepts, and probes and ports point at what the collector serves."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from rtcstats_server.config import build_config
from tests.services.haproxy import haproxy_binary

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def kubernetes() -> list[dict[str, Any]]:
    text = (DEPLOY / "kubernetes" / "collectors.yaml").read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_haproxy_example_is_valid_and_balances_without_stickiness() -> None:
    path = DEPLOY / "cluster" / "haproxy.cfg"
    result = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = path.read_text(encoding="utf-8").splitlines()
    text = "\n".join(line for line in lines if not line.strip().startswith("#"))
    assert "balance roundrobin" in text and "GET /readyz" in text
    assert "timeout tunnel" in text
    assert "stick" not in text and "cookie" not in text


def test_nginx_example_upgrades_websockets_and_keeps_them_open() -> None:
    lines = (DEPLOY / "cluster" / "nginx.conf").read_text(encoding="utf-8").splitlines()
    text = "\n".join(line for line in lines if not line.strip().startswith("#"))
    assert "proxy_set_header Upgrade $http_upgrade" in text
    assert "proxy_read_timeout 1h" in text
    assert "ip_hash" not in text and "sticky" not in text


def test_kubernetes_collectors_are_a_cluster_with_readiness_on_readyz() -> None:
    deployment, service = kubernetes()
    assert deployment["kind"] == "Deployment" and service["kind"] == "Service"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert service["spec"]["sessionAffinity"] == "None"
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    env: dict[str, str] = {}
    for variable in container["env"]:
        env[variable["name"]] = variable.get("value", "from-a-secret")
    env["RTCSTATS_METADATA__URI"] = "mongodb://mongodb:27017/"
    env["RTCSTATS_SERVER__NODE_ID"] = "rtcstats-collector-7d9f-abcde"
    config = build_config({}, environ=env)
    assert config.server.cluster and config.storage.backend == "s3"
    assert config.metadata.backend == "mongodb"
    assert pod["terminationGracePeriodSeconds"] > config.server.shutdown_grace_s
    assert container["ports"][0]["containerPort"] == config.server.port
