"""A gateway on a 3-node NATS cluster (``sluice up --cluster 3``) with two
replicas of every stage and of the ingress, under load while parts of it
die: every request gets one definite outcome (an answer, or a clear error),
every answer has exactly one row, and what the upstream answered is billed
once: the mock upstream's own count is the reference."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtest import faults
from schemas import subjects
from services.bus import process
from tests.integration.test_faults import (
    RECOVERY_S,
    assert_every_request_ended_cleanly,
    assert_rows_match_what_the_upstream_answered,
)
from tests.stack import DEMO_KEY, REDACT_KEY, Stack, mock_deployment

# A 3-node cluster with two replicas of everything, under load while parts of it die, which a busy
# neighbour would break: alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial

REPLICAS = {"provider": 2, "redact": 2, "cache": 2, "ingress": 2}
# Long enough for events to pile up; `python -m loadtest.reliability` holds it a minute.
OUTAGE_S = 10
# A model served by one mock upstream that a test makes misbehave for a while.
FLAKY = """
[[models]]
name = "flaky"
retries = 0
""" + mock_deployment("flaky", timeout_s=1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = Path(tmp_path_factory.mktemp("cluster"))
    s = Stack(home, timeout_s=30, extra_config=FLAKY, cluster=3, replicas=REPLICAS).start()
    yield s
    s.stop()


def load_during(stack: Stack, fault: str, act: object) -> faults.Report:
    return faults.run(stack.base_url, [DEMO_KEY, REDACT_KEY], stack.mock_url, fault, act, after_s=5)  # type: ignore[arg-type]


def test_every_stream_and_bucket_keeps_three_copies(cluster: Stack) -> None:
    async def replicas() -> dict[str, int]:
        nc = await process.connect("test", cluster.nats_url, cluster.creds("admin"))
        try:
            js = nc.jetstream()
            return {info.config.name: info.config.num_replicas for info in await js.streams_info()}
        finally:
            await nc.close()

    found = asyncio.run(replicas())
    assert subjects.EVENTS_STREAM in found and f"KV_{subjects.KV_KEYS}" in found
    assert set(found.values()) == {3}, found


def test_status_shows_replicas_the_cluster_and_clickhouse(cluster: Stack) -> None:
    args = ["--nats", cluster.nats_url, "--creds", cluster.creds("admin")]
    out = subprocess.run(
        [sys.executable, "-m", "services.cli.cli", "status", "--json", *args], capture_output=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    pids = cluster.supervisor.pids()
    beating = {p["name"]: p["pid"] for p in status["processes"]}
    assert beating == {n: pid for n, pid in pids.items() if not n.startswith(("nats-server", "mock"))}
    assert status["stages"]["provider"] == ["pipeline", "pipeline-1"]
    assert len(status["stages"]["redact"]) == 2 and status["stages"]["sink"] == ["sink"]
    copies = status["events_stream"]
    assert len(copies) == 3 and sum(c["leader"] for c in copies) == 1
    assert status["clickhouse"] == "ok" and status["events_pending"] is not None
    text = subprocess.run(
        [sys.executable, "-m", "services.cli.cli", "status", *args], capture_output=True, text=True, timeout=60
    ).stdout
    assert "provider   2 replicas  (pipeline, pipeline-1)" in text and "ClickHouse  ok" in text


def test_a_killed_nats_node_loses_nothing(cluster: Stack) -> None:
    pid = cluster.supervisor.pids()["nats-server"]
    report = load_during(cluster, "SIGKILL nats-server", faults.signal_to(pid, signal.SIGKILL))
    assert report.serving_again_s is not None and report.serving_again_s < RECOVERY_S
    assert_every_request_ended_cleanly(report)
    assert_rows_match_what_the_upstream_answered(cluster, report)
    assert cluster.supervisor.pids()["nats-server"] != pid, "the node was not brought back"
    failed = [o for o in report.outcomes if o.result != 200]
    print(f"node kill: {len(report.outcomes)} requests, {len(failed)} failed: {failed[:3]}")


@pytest.mark.parametrize("name", ["pipeline", "redact-1", "cache", "ingress-1"])
def test_a_killed_replica_fails_only_what_it_held(cluster: Stack, name: str) -> None:
    pid = cluster.supervisor.pids()[name]
    report = load_during(cluster, f"SIGKILL {name}", faults.signal_to(pid, signal.SIGKILL))
    assert report.serving_again_s is not None and report.serving_again_s < RECOVERY_S
    assert_every_request_ended_cleanly(report)
    assert_rows_match_what_the_upstream_answered(cluster, report)
    # The other replica served on: only requests already in flight at the kill
    # failed, and for the ingress, a caller's next request on a kept-alive
    # connection to it (reset before any answer: nothing reached the gateway).
    failed = [o for o in report.outcomes if o.result != 200]
    late = [o for o in failed if o.started >= report.killed_at]
    assert not late or (name.startswith("ingress") and all(o.result == "connection" for o in late)), late
    assert len(failed) <= 2 * 6, failed  # one in flight and one kept-alive connection per caller, at most
    print(f"{name}: {len(report.outcomes)} requests, {len(failed)} failed")


def assert_one_row_each_as_the_client_saw_it(stack: Stack, report: faults.Report) -> None:
    assert all(o.request_id for o in report.outcomes), [o for o in report.outcomes if not o.request_id][:3]
    rows = stack.rows_of(o.request_id for o in report.outcomes)  # waits while the sink catches up
    for o in report.outcomes:
        row = rows[o.request_id]
        if o.result == 200:
            assert row["status"] == 200 and int(row["cost_pico_usd"]) > 0, row
        elif isinstance(o.result, int):
            assert row["status"] == o.result, (o, row)
        else:  # an error event after the stream began
            assert row["status"] >= 400, (o, row)


@pytest.mark.parametrize(
    ("fault", "streams_only"), [("[mock:status=500]", False), ("[mock:hang]", False), ("[mock:cut_after=2]", True)]
)
def test_an_upstream_failing_for_a_while_gets_clear_errors_and_recovers(
    cluster: Stack, fault: str, streams_only: bool
) -> None:
    upstream = f"{cluster.mock_url}/mock/upstreams/flaky"

    def misbehave() -> None:
        httpx.put(upstream, json={"directives": fault}, timeout=5).raise_for_status()
        time.sleep(3)
        httpx.delete(upstream, timeout=5).raise_for_status()
        lifted.append(time.monotonic())

    lifted: list[float] = []
    report = faults.run(
        cluster.base_url, [DEMO_KEY], cluster.mock_url, fault, misbehave, before_s=1, after_s=3, model="flaky"
    )
    assert_every_request_ended_cleanly(report)
    during = [
        o
        for o in report.outcomes
        if report.killed_at + 0.5 < o.started < lifted[0] - 1.5 and (o.stream or not streams_only)
    ]
    assert during and all(o.result != 200 and o.json_error for o in during), during[:3]
    # Once the upstream behaves, so does everything (a hang ends at its 1 s timeout).
    after = [o for o in report.outcomes if o.started > lifted[0] + 1.5]
    assert after and all(o.result == 200 for o in after), [o for o in after if o.result != 200][:3]
    assert_one_row_each_as_the_client_saw_it(cluster, report)


def test_the_sink_stopped_under_load_loses_no_row(cluster: Stack) -> None:
    sup = cluster.supervisor

    def outage() -> None:
        sup.hold("sink")
        time.sleep(OUTAGE_S)
        sup.release("sink")

    report = load_during(cluster, "sink stopped", outage)
    # The request path does not depend on analytics.
    assert all(o.result == 200 for o in report.outcomes), [o for o in report.outcomes if o.result != 200][:3]
    assert_one_row_each_as_the_client_saw_it(cluster, report)
