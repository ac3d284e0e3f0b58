"""A rolling restart under load: every process of the gateway is stopped
with SIGTERM in turn (it drains: stops taking work, finishes what it holds,
flushes its rows) and the supervisor starts its replacement before the next
one goes. With two replicas of each stage and of the ingress, no caller
sees a failure, and every answer has exactly one row, billed once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest import faults
from tests.integration.test_faults import assert_rows_match_what_the_upstream_answered, outcomes_in
from tests.stack import DEMO_KEY, REDACT_KEY, Stack

# Every process restarted in turn under load, which a busy
# neighbour would break: alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial

# The embedded ClickHouse is one process's (chdb): the sink runs once, and
# its restart only makes events wait in the stream.
REPLICAS = {"provider": 2, "redact": 2, "cache": 2, "ingress": 2}


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(Path(tmp_path_factory.mktemp("rolling")), timeout_s=30, replicas=REPLICAS).start()
    yield s
    s.stop()


def test_a_rolling_restart_under_load_fails_no_request(replicated: Stack) -> None:
    sup = replicated.supervisor
    names = [n for n in sup.pids() if n not in ("nats-server", "mock-upstream")]
    assert {"pipeline", "pipeline-1", "redact-1", "cache-1", "ingress", "ingress-1", "sink"} <= set(names)
    before = sup.pids()
    took: dict[str, float] = {}

    def roll() -> None:
        for name in names:
            took[name] = sup.restart(name)

    report = faults.run(
        replicated.base_url, [DEMO_KEY, REDACT_KEY], replicated.mock_url, "rolling restart", roll, after_s=2
    )
    after = sup.pids()
    assert all(after[n] != before[n] for n in names), "a process was not replaced"
    # Each ended on its own after draining, none killed (uvicorn ends the
    # ingress by raising SIGTERM again once its graceful shutdown is done).
    exits = {n: why.split(";")[0] for _, n, why in sup.restarts if n in names}
    assert all(why == ("exited with -15" if n.startswith("ingress") else "exited with 0") for n, why in exits.items())
    # Load ran through the whole restart, and nothing failed.
    assert len(report.outcomes) > 4 * len(names)
    failed = [o for o in report.outcomes if o.result != 200]
    assert failed == [], failed[:5]
    assert_rows_match_what_the_upstream_answered(replicated, report)
    counts = faults_rows(replicated, report)
    assert counts == {(200, ""): len(report.outcomes)}, counts
    print("restart took", {n: round(s, 2) for n, s in took.items()})


def faults_rows(stack: Stack, report: faults.Report) -> dict[tuple[int, str], int]:
    """(status, code) -> rows in the load's window, once the sink caught up."""
    deadline = time.monotonic() + 30
    while (counts := outcomes_in(stack, report)) != {(200, ""): len(report.outcomes)}:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return counts
