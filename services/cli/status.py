"""``sluice status``: what a running gateway is made of, from the bus alone.

It listens to the processes' heartbeats for a little over one beat (each
says what it serves and holds), asks JetStream for the events consumer's
lag and for where the events stream's copies live (the NATS cluster's
state), and asks the sink a small query (ClickHouse answers, and how fast).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import msgspec
import nats.errors
from nats.aio.client import Client

from schemas import subjects
from schemas.lifecycle import Beat, decode_beat
from services.bus import process

LISTEN_S = 1.3  # heartbeats come every second


class ProcessState(msgspec.Struct):
    name: str
    serves: list[str]
    in_flight: int
    pid: int


class NatsNode(msgspec.Struct):
    name: str
    leader: bool
    current: bool
    lag: int = 0


class Status(msgspec.Struct):
    processes: list[ProcessState]
    # stage -> its live processes
    stages: dict[str, list[str]]
    events_pending: int | None
    nats_connected_to: str
    events_stream: list[NatsNode]
    clickhouse: str
    clickhouse_ms: float | None


async def gather(nc: Client) -> Status:
    beats: dict[str, Beat] = {}

    async def on_beat(msg) -> None:
        with contextlib.suppress(msgspec.DecodeError):
            beats[msg.subject.rsplit(".", 1)[1]] = decode_beat(msg.data)

    sub = await nc.subscribe(f"{subjects.CONTROL_HEARTBEAT}.*", cb=on_beat)
    listening_since = time.monotonic()
    clickhouse, took = await _clickhouse(nc)
    js = nc.jetstream()
    pending: int | None = None
    nodes: list[NatsNode] = []
    try:
        info = await js.consumer_info(subjects.EVENTS_STREAM, subjects.SINK_DURABLE)
        pending = info.num_pending + info.num_ack_pending
    except nats.errors.Error:
        pass
    try:
        cluster = (await js.stream_info(subjects.EVENTS_STREAM)).cluster
        if cluster is not None:
            nodes = [NatsNode(cluster.leader, True, True)] if cluster.leader else []
            nodes += [NatsNode(r.name, False, bool(r.current), r.lag or 0) for r in cluster.replicas or []]
    except nats.errors.Error:
        pass
    await asyncio.sleep(max(0.0, LISTEN_S - (time.monotonic() - listening_since)))
    await sub.unsubscribe()
    processes = [ProcessState(n, b.serves, b.in_flight, b.pid) for n, b in sorted(beats.items())]
    stages: dict[str, list[str]] = {}
    for p in processes:
        for stage in p.serves:
            stages.setdefault(stage, []).append(p.name)
    return Status(
        processes=processes,
        stages=dict(sorted(stages.items())),
        events_pending=pending,
        nats_connected_to=str(nc.connected_url.netloc if nc.connected_url else ""),
        events_stream=nodes,
        clickhouse=clickhouse,
        clickhouse_ms=took,
    )


async def _clickhouse(nc: Client) -> tuple[str, float | None]:
    """Whether the sink and its ClickHouse answer a one-row query, and in how long."""
    ask = {"name": "stored_since", "params": {"since_ns": time.time_ns() - 60_000_000_000, "limit": 1}}
    started = time.perf_counter()
    try:
        msg = await nc.request(subjects.ANALYTICS_QUERY, json.dumps(ask).encode(), timeout=5)
    except nats.errors.NoRespondersError:
        return "no sink running", None
    except nats.errors.TimeoutError:
        return "no answer in 5 s", None
    took = (time.perf_counter() - started) * 1000
    error = json.loads(msg.data).get("error")
    return ("ok" if error is None else f"error: {error}"), took


def render(s: Status) -> str:
    lines = ["processes"]
    for p in s.processes:
        serves = ", ".join(p.serves) or "-"
        lines.append(f"  {p.name:<14} pid {p.pid:<8} in flight {p.in_flight:<6} serves {serves}")
    if not s.processes:
        lines.append("  none beating: is `sluice up` running?")
    lines.append("stages")
    for stage, names in s.stages.items():
        lines.append(f"  {stage:<10} {len(names)} replica{'s' if len(names) != 1 else ''}  ({', '.join(names)})")
    pending = "unknown (no events consumer yet)" if s.events_pending is None else str(s.events_pending)
    lines.append(f"events waiting for the sink  {pending}")
    lines.append(f"NATS  connected to {s.nats_connected_to}")
    for node in s.events_stream:
        role = "leader" if node.leader else ("current" if node.current else f"behind by {node.lag}")
        lines.append(f"  events stream copy on {node.name}: {role}")
    ms = f" in {s.clickhouse_ms:.0f} ms" if s.clickhouse_ms is not None else ""
    lines.append(f"ClickHouse  {s.clickhouse}{ms}")
    return "\n".join(lines)


def run(url: str, creds: str | None, as_json: bool) -> int:
    status = process.run_tool(url, creds, gather)
    print(msgspec.json.encode(status).decode() if as_json else render(status))
    return 0 if status.processes and status.clickhouse == "ok" else 1
