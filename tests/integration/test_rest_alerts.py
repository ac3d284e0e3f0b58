"""Alert rules over REST calls on the embedded store: the measures
``rest_error_rate`` and ``rest_latency_p95`` (per service, or per service,
method and route) give the values computed here from the same rows, stored
through the sink's path; the evaluator asks them for a rule of either kind
with the rule's window, grouping and volume floor, and what is over the
threshold breaches. Callers without a key, services that do not exist and
calls whose client left are no subject's and no call's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from analytics import intake
from analytics.alerting import MEASURES, Evaluator
from analytics.intake import Pulled
from analytics.store import Store
from schemas import bus
from schemas.alerts import AlertRule
from schemas.events import EventBatch, RequestEvent
from services import alerts

MS = 1_000_000
S = 1_000_000_000


class Call(msgspec.Struct, frozen=True):
    """One REST call's row: how it ended and how long it took."""

    service: str
    method: str
    route: str
    status: int = 200
    latency_ms: int = 10
    version: int = 1
    error_code: str = ""
    key: str = "k1"
    client_disconnected: bool = False
    minutes_ago: float = 1.0


CALLS = [
    Call("billing", "GET", "/invoices/{id}", latency_ms=10),
    Call("billing", "GET", "/invoices/{id}", latency_ms=20),
    Call("billing", "GET", "/invoices/{id}", status=404, latency_ms=5),  # the service answered 404
    Call("billing", "GET", "/invoices/{id}", status=502, latency_ms=3000, error_code="upstream_unreachable"),
    Call("billing", "POST", "/invoices", status=201, latency_ms=100),
    Call("billing", "GET", "/invoices", version=2, latency_ms=30),
    Call("billing", "GET", "/invoices", version=2, latency_ms=40),
    Call("billing", "GET", "", latency_ms=9000),  # a path its document has no route for
    # Left out everywhere: a client that left, a stranger's made-up name, a service that does not exist.
    Call("billing", "GET", "/sse", status=499, latency_ms=60000, error_code="client_closed", client_disconnected=True),
    Call("made-up", "GET", "", status=401, error_code="invalid_api_key", key=""),
    Call("ghost", "GET", "", status=404, error_code="service_not_found"),
    # Older than a 5-minute window, within an hour's.
    Call("billing", "GET", "/invoices/{id}", status=500, latency_ms=50, minutes_ago=30),
]
BILLING_RECENT = [c for c in CALLS[:8] if c.version == 1]
BILLING_V2 = [c for c in CALLS if c.version == 2]


def row(i: int, c: Call, now_ns: int) -> RequestEvent:
    at = now_ns - int(c.minutes_ago * 60 * S) + i * MS
    model = f"service:{c.service}" if c.version == 1 else f"service:{c.service}/v{c.version}"
    return RequestEvent(
        event_id=f"e{i}", request_id=f"r{i}", received_at_ns=at, origin="http", api="rest", model=model,
        status=c.status, error_code=c.error_code, tenant_id="t1" if c.key else "", key_id=c.key,
        latency_ns=c.latency_ms * MS, client_disconnected=c.client_disconnected, rest_service=c.service,
        rest_version=c.version, http_method=c.method, route=c.route,
    )  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    now = time.time_ns()
    events = [row(i, c, now) for i, c in enumerate(CALLS)]
    # A chat request with a 500 in the window: no REST subject's.
    events.append(RequestEvent(event_id="chat", request_id="chat", received_at_ns=now - S, origin="http",
                               api="chat", model="demo-model", status=500, key_id="k1", latency_ns=MS))  # fmt: skip
    s = Store(f"chdb://{Path(tmp_path_factory.mktemp('rest_alerts')) / 'data'}")
    s.migrate()
    pulled = [Pulled(subject="sluice.v1.events.provider", data=bus.encode(EventBatch(id="b", events=events)))]
    good, dead = intake.sort(pulled)
    assert dead == []
    assert intake.store_all(good, dead, s.insert) == []
    yield s
    s.close()


def measure(store: Store, name: str, **params: object) -> dict[str, dict]:
    named = MEASURES[name]
    bound = {k: params.get(k, default) for k, (_, default) in named.params.items()}
    columns, rows = store.query(named.sql, bound)
    return {r["subject"]: r for r in (dict(zip(columns, row, strict=True)) for row in rows)}


def failed(c: Call) -> bool:
    return c.status >= 400


def test_rest_error_rate_per_service_counts_every_failure_of_known_callers(store: Store) -> None:
    got = measure(store, "rest_error_rate", min_requests=1)
    assert set(got) == {"billing", "billing/v2"}
    billing = got["billing"]
    assert billing["volume"] == len(BILLING_RECENT) == 6
    assert billing["value"] == pytest.approx(sum(map(failed, BILLING_RECENT)) / len(BILLING_RECENT))  # 2 of 6
    assert billing["detail"] == "2 of 6 calls failed (1 of them answered so by the service)"
    assert (got["billing/v2"]["value"], got["billing/v2"]["volume"]) == (0.0, len(BILLING_V2))
    # The hour's window takes in the older 500 too.
    assert measure(store, "rest_error_rate", minutes=60, min_requests=1)["billing"]["value"] == pytest.approx(3 / 7)
    # Below the volume floor: no verdict.
    assert set(measure(store, "rest_error_rate", min_requests=3)) == {"billing"}


def test_rest_error_rate_per_route_names_service_method_and_route(store: Store) -> None:
    got = measure(store, "rest_error_rate", by="route", min_requests=1)
    assert {s: (r["value"], r["volume"]) for s, r in got.items()} == {
        "billing GET /invoices/{id}": (0.5, 4),
        "billing POST /invoices": (0.0, 1),
        "billing/v2 GET /invoices": (0.0, 2),
        "billing GET (no route)": (0.0, 1),
    }


def test_rest_latency_p95_is_of_calls_that_did_not_fail(store: Store) -> None:
    got = measure(store, "rest_latency_p95", min_requests=1)
    ok = [c.latency_ms for c in BILLING_RECENT if not failed(c)]  # 10, 20, 100, 9000: not the 502's 3000
    assert got["billing"]["volume"] == len(ok) == 4
    assert sorted(ok)[-2] <= got["billing"]["value"] <= max(ok)
    assert 30 <= got["billing/v2"]["value"] <= 40
    per_route = measure(store, "rest_latency_p95", by="route", min_requests=1)
    assert per_route["billing GET /invoices/{id}"]["volume"] == 2
    assert 10 <= per_route["billing GET /invoices/{id}"]["value"] <= 20
    assert (
        measure(store, "rest_latency_p95", minutes=60, min_requests=1)["billing"]["volume"] == 4
    )  # the old 500 failed


class _Nats:
    def jetstream(self) -> None:
        return None


def rule(kind: str, threshold: float, **fields: object) -> AlertRule:
    return msgspec.convert({"name": kind.replace("_", "-"), "kind": kind, "threshold": threshold, **fields}, AlertRule)


def test_the_evaluator_measures_rest_rules_and_what_is_over_breaches(store: Store) -> None:
    evaluator = Evaluator(_Nats(), store, [], 15.0)  # type: ignore[arg-type]

    def breached(r: AlertRule) -> dict[str, float]:
        measured = asyncio.run(evaluator._measure(r))
        return {s: b.value for s, b in alerts.breaches(r, measured).items()}

    # Default grouping is per service; the volume floor leaves billing/v2 (2 calls) without a verdict.
    assert breached(rule("rest_error_rate", 0.3, min_requests=5)) == {"billing": pytest.approx(1 / 3)}
    assert breached(rule("rest_error_rate", 0.4, min_requests=1, by="route")) == {"billing GET /invoices/{id}": 0.5}
    slow = breached(rule("rest_latency_p95", 1000, min_requests=1, by="service"))
    assert set(slow) == {"billing"}  # the 9 s export; v2's 40 ms is under
    assert breached(rule("rest_latency_p95", 1000, min_requests=1, by="route")) == {"billing GET (no route)": 9000.0}
