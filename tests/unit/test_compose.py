"""compose/docker-compose.yml's structure (no Docker engine runs here): what
it starts, that the pieces point at each other, and that every module,
credentials file and variable it names exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from services.bus import credentials

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
NODES = ("nats-1", "nats-2", "nats-3")
STAGES = {"pipeline": "workers.pipeline", "redact": "workers.redaction", "cache": "workers.cache",
          "sink": "analytics.sink", "ingress": "ingress"}  # fmt: skip


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"]


def test_three_nats_nodes_form_one_jetstream_cluster(services: dict) -> None:
    conf = (COMPOSE / "nats" / "nats.conf").read_text()
    assert "jetstream" in conf and "name: sluice" in conf
    routes = set(re.findall(r"nats-route://([\w-]+):6222", conf))
    assert routes == set(NODES)
    names = set()
    for node in NODES:
        command = services[node]["command"]
        names.add(command[command.index("--server_name") + 1])
        assert any(v.endswith(":/data") for v in services[node]["volumes"]), "JetStream data must outlive the container"
        mounts = {v.split(":")[1] for v in services[node]["volumes"]}
        assert "/etc/nats/nats.conf" in mounts and "/etc/nats/secrets/sluice-auth.conf" in mounts
    assert names == set(NODES)
    include = re.search(r"include\s+\./(\S+)", conf)
    assert include and include.group(1) == "secrets/sluice-auth.conf"


def test_every_stage_runs_replicated_against_the_cluster_and_clickhouse(services: dict) -> None:
    for name, module in STAGES.items():
        svc = services[name]
        command = svc["command"]
        assert command[:3] == ["python", "-m", module]
        assert importlib.util.find_spec(module) is not None, module
        env = svc["environment"]
        assert env["SLUICE_NATS_URL"].split(",") == [f"nats://{n}:4222" for n in NODES]
        assert env["SLUICE_CLICKHOUSE_DSN"].startswith("http://") and "@clickhouse:8123" in env["SLUICE_CLICKHOUSE_DSN"]
        role = Path(env["SLUICE_NATS_CREDS"]).stem
        assert role in credentials.ROLES and role == env["SLUICE_ROLE"]
        replicas = re.fullmatch(r"\$\{(\w+):-(\d+)\}", str(svc["deploy"]["replicas"]))
        assert replicas and int(replicas.group(2)) >= 2, f"{name}: replicas from .env, 2 or more by default"
        assert svc["depends_on"]["seed"]["condition"] == "service_completed_successfully"
        # SIGTERM drains for up to drain_s (10 s by default): leave it the time.
        assert int(svc["stop_grace_period"].rstrip("s")) > 10
    assert services["pipeline"]["command"][3:] == ["policy", "route", "provider"]


def test_the_seed_makes_three_copies_and_the_tables(services: dict) -> None:
    script = " ".join(services["seed"]["command"])
    assert "sluice seed" in script and "--replicas 3" in script and "sluice analytics migrate" in script
    assert {services["seed"]["depends_on"][n]["condition"] for n in [*NODES, "clickhouse"]} == {"service_healthy"}


def test_one_port_in_front_of_the_ingress_replicas(services: dict) -> None:
    lb = services["lb"]
    assert lb["ports"] == ["${SLUICE_HTTP_PORT:-8080}:8080"]
    conf = (COMPOSE / "lb" / "nginx.conf").read_text()
    assert "server ingress:8080 resolve" in conf and "proxy_buffering off" in conf  # streams pass as they come


def test_every_variable_has_an_example(services: dict) -> None:
    text = (COMPOSE / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{(\w+)", text))
    example = {line.split("=", 1)[0] for line in (COMPOSE / ".env.example").read_text().splitlines() if "=" in line}
    assert used <= example, used - example


def test_the_image_runs_each_replica_under_its_own_name() -> None:
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    for folder in ("schemas", "services", "workers", "ingress", "analytics"):
        assert f"COPY {folder} {folder}" in dockerfile
    entry = (COMPOSE / "entrypoint.sh").read_text()
    assert 'SLUICE_PROCESS_NAME="${SLUICE_ROLE:-sluice}-${HOSTNAME}"' in entry and 'exec "$@"' in entry
