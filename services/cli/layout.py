"""What a gateway is made of: its stages, which process hosts each, how
many of each run, and where NATS, HTTP and ClickHouse listen. Pure data: the
supervisor starts what a ``Layout`` says."""

from __future__ import annotations

from pathlib import Path

import msgspec

from schemas.envelope import WorkerStage
from services.readiness import NEEDED

# The module each stage's process runs.
_MODULES: dict[str, str] = {
    "policy": "workers.policy",
    "redact": "workers.redaction",
    "route": "workers.routing",
    "cache": "workers.cache",
    "provider": "workers.provider",
    "sink": "analytics.sink",
}
# A process for every stage ``/readyz`` waits for (a stage without a module
# fails here, at import), in the order a request visits them.
STAGES = {stage: ["-m", _MODULES[stage]] for stage in NEEDED}
# The default layout hosts these stages together, handing each request from
# one to the next in memory: one process per replica, named "pipeline",
# "pipeline-1", ... (``Layout.separate_stages`` runs each alone instead).
PIPELINE: tuple[WorkerStage, ...] = ("policy", "route", "provider")


def process_of(stage: str, *, separate_stages: bool = False) -> str:
    """The name of the (first) process that runs ``stage`` in a layout."""
    return "pipeline" if stage in PIPELINE and not separate_stages else stage


def stage_processes(*, separate_stages: bool = False) -> list[str]:
    """The names of a layout's stage processes (first replicas)."""
    return list(dict.fromkeys(process_of(stage, separate_stages=separate_stages) for stage in STAGES))


def replica_name(name: str, index: int) -> str:
    return name if index == 0 else f"{name}-{index}"


def parse_replicas(text: str) -> dict[str, int]:
    """``route=3,provider=2`` as a dict; a ValueError says what is wrong."""
    known = {*STAGES, "ingress"}
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, count = part.partition("=")
        if name not in known:
            raise ValueError(f"unknown stage {name!r} in --replicas (known: {', '.join(sorted(known))})")
        if not count.isdigit() or not 1 <= int(count) <= 64:
            raise ValueError(f"--replicas {name}= takes a whole number from 1 to 64, not {count!r}")
        out[name] = int(count)
    return out


class Analytics(msgspec.Struct, frozen=True):
    """Where a gateway's rows go (``sluice up --analytics``)."""

    here: bool = True  # a sink runs with this gateway
    server: str | None = None  # the ClickHouse it writes to; None: embedded (chdb) under the home


def parse_analytics(text: str) -> Analytics:
    """``embedded``, ``server=URL`` or ``none``; a ValueError says what is wrong."""
    if text == "embedded":
        return Analytics()
    if text == "none":
        return Analytics(here=False)
    kind, _, dsn = text.partition("=")
    if kind == "server" and dsn.startswith(("http://", "https://", "chdb://")):
        return Analytics(server=dsn)
    raise ValueError(f"--analytics takes embedded, server=http://HOST:8123 or none, not {text[:100]!r}")


class Layout(msgspec.Struct):
    home: Path
    config: Path
    nats_port: int = 4222
    http_port: int = 8080
    mock_port: int | None = 9100
    clickhouse_dsn: str | None = None
    # False: no sink here, so no ClickHouse engine either (``--analytics
    # none``): rows wait in the events stream, within its limits, for a sink
    # elsewhere on the same NATS.
    analytics: bool = True
    # Processes per stage, and per "ingress" (its replicas share ``http_port``
    # through SO_REUSEPORT); 1 for any not named. In the default layout the
    # pipeline runs as many times as the most any of its stages was given.
    replicas: dict[str, int] = {}
    # More ingress processes, one per port, beside the one on ``http_port``.
    extra_http_ports: list[int] = []
    # Every stage in its own process, no pipeline (the two layouts are
    # measured side by side by ``make bench``).
    separate_stages: bool = False
    # NATS nodes: 1, or a cluster on loopback whose streams and buckets keep
    # a copy on each of up to 3 nodes (R3), so one node may die. Node i
    # (from 0) serves clients on ``nats_port + i`` and the other nodes on
    # ``nats_port + 2000 + i``, unless the two lists name the ports.
    cluster: int = 1
    extra_nats_ports: list[int] = []
    route_ports: list[int] = []
    # Each process connects as its role's NATS user, allowed only its own
    # subjects. Off only to measure what authorization costs.
    auth: bool = True

    @property
    def embedded_engine(self) -> bool:
        """True when this gateway's sink runs ClickHouse in its own process (chdb)."""
        return self.analytics and self.dsn.startswith("chdb://")

    def process_of(self, stage: str) -> str:
        """The name of the (first) process that runs ``stage``."""
        return process_of(stage, separate_stages=self.separate_stages)

    @property
    def nats_ports(self) -> list[int]:
        extra = self.extra_nats_ports or [self.nats_port + i for i in range(1, self.cluster)]
        return [self.nats_port, *extra[: self.cluster - 1]]

    @property
    def cluster_ports(self) -> list[int]:
        return self.route_ports or [self.nats_port + 2000 + i for i in range(self.cluster)]

    @property
    def nats_url(self) -> str:
        """Every node's URL, comma-separated: a client fails over among them."""
        return ",".join(f"nats://127.0.0.1:{port}" for port in self.nats_ports)

    @property
    def stream_replicas(self) -> int:
        return min(self.cluster, 3)

    @property
    def dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{self.home / 'clickhouse'}"
