"""Every named query against a generated data set whose answers are known:
the rows are made here, the expected answers computed here from the same
rows, and each query (run as the sink runs it, with its parameters bound)
must give them. A query added without an answer here fails the last test."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from analytics import recost
from analytics.alerting import MEASURES
from analytics.queries import NAMED, bind
from analytics.rows import to_rows
from analytics.store import Store
from schemas.analytics import QueryRequest
from schemas.envelope import Span
from schemas.events import (
    AlertEvent,
    AlertStateEvent,
    ApiCallEvent,
    AttemptEvent,
    AuditEvent,
    CallLogEvent,
    DeadLetter,
    Detection,
    DetectionEvent,
    RequestEvent,
    StageEvent,
)

# Ten minutes before the data is made (the module's fixture), inside every
# window the queries default to; set there, since the suite may run long
# after this module is imported.
T0 = 0
MS = 1_000_000
S = 1_000_000_000


def request(i: int) -> RequestEvent:
    """Request i of 20: two tenants, three keys, two models; every fifth is
    rate limited, one failed upstream, one succeeded for nothing, one was a
    cache hit, one came from a job, every third is in an A/B split."""
    status, error_type, error_code = 200, "", ""
    if i % 5 == 0:
        status, error_type, error_code = 429, "rate_limit_error", "rate_limited"
    elif i == 7:
        status, error_type, error_code = 502, "server_error", "upstream_error"
    cost = 0 if status != 200 or i in (3, 4) else 1000 * (i + 1)
    return RequestEvent(
        event_id=f"e{i}",
        request_id=f"r{i}",
        received_at_ns=T0 + i * 1_000_000_000,
        origin="job" if i == 9 else "http",
        api="responses" if i % 4 == 1 else "chat",
        model="m1" if i % 2 else "m2",
        model_group="g" if i % 3 == 0 else "",
        arm=("a" if i % 2 else "b") if i % 3 == 0 else "",
        deployment="d1" if i % 2 else "d2",
        provider="openai",
        status=status,
        stream=bool(i % 2),
        tenant_id="t1" if i < 12 else "t2",
        key_id="k1" if i < 6 else ("k2" if i < 12 else "k3"),
        error_type=error_type,
        error_code=error_code,
        prompt_tokens=10 + i,
        completion_tokens=2 * i,
        cost_pico_usd=cost,
        cache_hit=i == 4,
        cost_saved_pico_usd=500 if i == 4 else 0,
        latency_ns=(i + 1) * MS,
        ttft_ns=(i + 1) * MS // 2,
        policy_ns=1000,
        # Request 2's visits, as every request now carries them.
        spans=[Span("ingress", T0 + 2 * S, T0 + 2 * S + 300), Span("policy", T0 + 2 * S + 500, T0 + 2 * S + 1500)]
        if i == 2
        else [],
        # Requests 4 and 6 came in one caller's trace.
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736" if i in (4, 6) else "",
        prompt_name="p" if i == 11 else "",
        prompt_version=1 if i == 11 else 0,
        parent_id="call-1" if i == 11 else "",
    )


REQUESTS: list[RequestEvent] = []


def others() -> list:
    return [
        AttemptEvent("a1", "r1", T0 + 1_000_000_000, "d1", "openai", "gpt", 500, error_code="upstream_error", number=1),
        AttemptEvent("a2", "r1", T0 + 1_100_000_000, "d1", "openai", "gpt", 200, ttfb_ns=2 * MS, number=2),
        StageEvent("s1", "r1", "policy", T0 + 1_000_000_000, 1000, "forward"),
        StageEvent("s2", "r1", "provider", T0 + 1_000_100_000, 5000, "reply"),
        AlertEvent("al1", "r3", T0 + 3_000_000_000, "zero_cost", model="m1", detail="cost 0"),
        AuditEvent("au1", T0, "admin", "create", "tenant", "t1", tenant_id="t1"),
        ApiCallEvent("c1", "call-1", T0 + 11_000_000_000, "p", "p", 1, "", "http", 200, tenant_id="t1", calls=1),
        ApiCallEvent(
            "c2",
            "call-2",
            T0 + 12_000_000_000,
            "p",
            "p",
            2,
            "",
            "http",
            502,
            tenant_id="t2",
            calls=2,
            schema_failures=1,
        ),
        CallLogEvent("cl1", "r1", T0 + 1_000_000_000, "t1", "k1", "m1", 200, '{"q":1}', '{"a":2}', 7, 7),
        CallLogEvent("cl2", "r13", T0 + 13_000_000_000, "t2", "k3", "m1", 200, "x" * 10, "y", 10, 1),
        AlertStateEvent("x-1", "firing", "errs", "error_rate", "m1", T0, T0, 0.6, 0.5, detail="6 of 10"),
        DetectionEvent(
            "d1",
            "r2",
            T0 + 2_000_000_000,
            "t1",
            [
                Detection("phone", "flag", "messages[1].content", 0, 16),
                Detection("email", "mask", "messages[0].content", 5, 21),
            ],
            3,
        ),
        AlertStateEvent("x-1", "resolved", "errs", "error_rate", "m1", T0 + 60_000_000_000, T0, 0.6, 0.5),
        AlertStateEvent("x-2", "firing", "spend", "spend_spike", "t2/k3", T0 + 5, T0 + 5, 9.0, 3.0, tenant_id="t2"),
    ]


def dead() -> list[DeadLetter]:
    return [DeadLetter("dl1", T0, "sluice.v1.events.provider", "bad", b"{}", "r0")]


CORRECTION = ("r1", 2000, 2600)  # r1 recorded at 2000 pico-USD, recosted to 2600


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    global T0
    T0 = time.time_ns() - 10 * 60 * 1_000_000_000
    REQUESTS[:] = [request(i) for i in range(20)]
    s = Store(f"chdb://{Path(tmp_path_factory.mktemp('named')) / 'data'}")
    s.migrate()
    s.insert(to_rows([*REQUESTS, *others()], dead()))
    # Request 0 comes again as it was (dropped), request 7 with another status (a conflict).
    s.insert(to_rows([REQUESTS[0], msgspec.structs.replace(REQUESTS[7], status=200, error_type="", error_code="")]))
    rid, old, new = CORRECTION
    r = REQUESTS[1]
    s.command(
        "INSERT INTO cost_corrections (request_id, ts, corrected_at, recost_id, tenant_id, key_id, model, deployment, "
        "provider, status, old_cost_pico_usd, new_cost_pico_usd) VALUES ({rid:String}, fromUnixTimestamp64Nano("
        "toInt64({ts:Int64})), now64(9), 'fix', 't1', 'k1', 'm1', 'd1', 'openai', 200, {old:UInt64}, {new:UInt64})",
        {"rid": rid, "ts": r.received_at_ns, "old": old, "new": new},
    )
    yield s
    s.close()


def run(store: Store, name: str, **params: object) -> list[dict]:
    sql, bound = bind(QueryRequest(name=name, params=params))  # type: ignore[arg-type]
    columns, rows = store.query(sql, bound)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def cost(r: RequestEvent) -> int:
    """A request's cost as it stands: its correction, else as recorded."""
    return CORRECTION[2] if r.request_id == CORRECTION[0] else r.cost_pico_usd


def by(key: Callable[[RequestEvent], object], rows: list[RequestEvent] = REQUESTS) -> dict:
    out: dict = defaultdict(list)
    for r in rows:
        out[key(r)].append(r)
    return out


def assert_quantiles(got: list[float], values: list[float]) -> None:
    assert len(got) == 3 and got == sorted(got), got
    assert min(values) - 0.01 <= got[0] and got[2] <= max(values) + 0.01, (got, values)


# name -> a check of its answer; each asserts the known answer.
ANSWERS: dict[str, Callable[[Store], None]] = {}


def answer(name: str) -> Callable[[Callable[[Store], None]], Callable[[Store], None]]:
    def keep(check: Callable[[Store], None]) -> Callable[[Store], None]:
        ANSWERS[name] = check
        return check

    return keep


@answer("request")
def _(store: Store) -> None:
    (row,) = run(store, "request", request_id="r7")
    assert (row["status"], row["error_code"], row["tenant_id"], row["cost_pico_usd"]) == (
        502,
        "upstream_error",
        "t1",
        0,
    )


@answer("attempts")
def _(store: Store) -> None:
    assert [(r["number"], r["status"]) for r in run(store, "attempts", request_id="r1")] == [(1, 500), (2, 200)]


@answer("stages")
def _(store: Store) -> None:
    # Request 1 was stored with one event per visit (as before spans rode on the request's event).
    rows = run(store, "stages", request_id="r1")
    assert [(r["stage"], r["duration_ns"], r["outcome"]) for r in rows] == [
        ("policy", 1000, "forward"),
        ("provider", 5000, "reply"),
    ]
    rows = run(store, "stages", request_id="r2")
    assert [(r["stage"], int(r["start_ns"]), r["duration_ns"], r["outcome"]) for r in rows] == [
        ("ingress", T0 + 2 * S, 300, "forward"),
        ("policy", T0 + 2 * S + 500, 1000, "reply"),
    ]


@answer("children")
def _(store: Store) -> None:
    assert [r["request_id"] for r in run(store, "children", parent_id="call-1")] == ["r11"]


@answer("trace")
def _(store: Store) -> None:
    rows = run(store, "trace", trace_id="4bf92f3577b34da6a3ce929d0e0e4736")
    assert [r["request_id"] for r in rows] == ["r4", "r6"]
    assert run(store, "trace", trace_id="") == []  # requests without a trace are not one trace


@answer("api_call")
def _(store: Store) -> None:
    (row,) = run(store, "api_call", request_id="call-2")
    assert (row["status"], row["calls"], row["schema_failures"]) == (502, 2, 1)


@answer("prompt_versions")
def _(store: Store) -> None:
    rows = run(store, "prompt_versions", prompt="p")
    assert [(r["prompt_version"], r["calls"], r["errors"], r["schema_failures"]) for r in rows] == [
        (1, 1, 0, 0),
        (2, 1, 1, 1),
    ]


@answer("call_logs")
def _(store: Store) -> None:
    assert [r["request_id"] for r in run(store, "call_logs")] == ["r13", "r1"]  # newest first
    (t2,) = run(store, "call_logs", tenant_id="t2", chars=4)
    assert (t2["request_body"], t2["request_bytes"]) == ("xxxx", 10)
    assert run(store, "call_logs", status="error") == []


@answer("alert_states")
def _(store: Store) -> None:
    rows = {r["alert_id"]: r for r in run(store, "alert_states")}
    assert (rows["x-1"]["state"], rows["x-2"]["state"]) == ("resolved", "firing")
    assert rows["x-1"]["resolved_at_ms"] == (T0 + 60_000_000_000) // MS and rows["x-2"]["resolved_at_ms"] == 0
    assert [r["alert_id"] for r in run(store, "alert_states", tenant_id="t2")] == ["x-2"]


@answer("alerts")
def _(store: Store) -> None:
    # The conflict's alert was raised as the rows were stored (now): the newest.
    got = [(r["request_id"], r["alert"]) for r in run(store, "alerts")]
    assert got == [("r7", "row_conflict"), ("r3", "zero_cost")]


@answer("audit")
def _(store: Store) -> None:
    assert [(r["action"], r["record_id"]) for r in run(store, "audit", tenant_id="t1")] == [("create", "t1")]


@answer("dead_letters")
def _(store: Store) -> None:
    assert [(r["request_id"], r["reason"]) for r in run(store, "dead_letters")] == [("r0", "bad")]


@answer("event_counts")
def _(store: Store) -> None:
    got = {r["kind"]: r["events"] for r in run(store, "event_counts")}
    # call logs and alert states go to their own tables only
    assert got == {"request": 20, "attempt": 2, "stage": 2, "alert": 2, "audit": 1, "api_call": 2}


@answer("deployments")
def _(store: Store) -> None:
    (row,) = run(store, "deployments")
    assert (row["deployment"], row["tries"], row["failed"], row["p50_ttfb_ms"]) == ("d1", 2, 1, 2.0)


@answer("job_requests")
def _(store: Store) -> None:
    assert [(r["request_id"], r["rows"]) for r in run(store, "job_requests")] == [("r9", 1)]


@answer("outcomes")
def _(store: Store) -> None:
    got = {(r["status"], r["error_code"]): (r["requests"], int(r["cost_pico_usd"])) for r in run(store, "outcomes")}
    want = {k: (len(v), sum(r.cost_pico_usd for r in v)) for k, v in by(lambda r: (r.status, r.error_code)).items()}
    assert got == want  # raw rows: as recorded, before the correction


@answer("errors_by_type")
def _(store: Store) -> None:
    got = {(r["error_type"], r["error_code"]): (r["errors"], r["rate"]) for r in run(store, "errors_by_type")}
    assert got == {("rate_limit_error", "rate_limited"): (4, 0.2), ("server_error", "upstream_error"): (1, 0.05)}


@answer("arms")
def _(store: Store) -> None:
    got = {(r["model_group"], r["arm"]): (r["requests"], r["errors"]) for r in run(store, "arms")}
    want = {("g", arm): v for arm, v in {"a": [3, 9, 15], "b": [0, 6, 12, 18]}.items()}
    assert got == {k: (len(v), sum(REQUESTS[i].status != 200 for i in v)) for k, v in want.items()}


@answer("breakdown")
def _(store: Store) -> None:
    assert {r["stream"]: r["requests"] for r in run(store, "breakdown")} == {False: 10, True: 10}


@answer("breakdown_by_key")
def _(store: Store) -> None:
    assert {r["key_id"]: r["requests"] for r in run(store, "breakdown_by_key")} == {"k1": 6, "k2": 6, "k3": 8}


@answer("breakdown_by_model")
def _(store: Store) -> None:
    got = {r["model"]: (r["requests"], r["cache_hits"]) for r in run(store, "breakdown_by_model")}
    assert got == {"m1": (10, 0), "m2": (10, 1)}


def _per_model(rows: list[dict]) -> dict[str, dict]:
    return {r["model"]: r for r in rows}


@answer("stats")
def _(store: Store) -> None:
    got = _per_model(run(store, "stats", minutes=60))
    for model, rs in by(lambda r: r.model).items():
        row = got[model]
        assert (row["requests"], row["errors"]) == (len(rs), sum(r.status >= 400 for r in rs))
        assert (row["prompt_tokens"], row["completion_tokens"]) == (
            sum(r.prompt_tokens for r in rs),
            sum(r.completion_tokens for r in rs),
        )
        assert int(row["cost_pico_usd"]) == sum(cost(r) for r in rs)
        assert_quantiles(row["latency_ms"], [r.latency_ns / MS for r in rs])
        assert_quantiles(row["ttft_ms"], [r.ttft_ns / MS for r in rs if r.status < 400])


@answer("hourly")
def _(store: Store) -> None:
    rows = run(store, "hourly", tenant_id="t2")
    assert sum(r["requests"] for r in rows) == 8
    assert sum(int(r["cost_pico_usd"]) for r in rows) == sum(cost(r) for r in REQUESTS if r.tenant_id == "t2")
    # Narrowed to keys in the query (the portal's developer view): only theirs, across tenants when none is named.
    for key_ids, tenant in (("k1", "t1"), ("k1,k3", ""), ("k3", "t1")):
        narrowed = run(store, "hourly", tenant_id=tenant, key_ids=key_ids)
        mine = [r for r in REQUESTS if r.key_id in key_ids.split(",") and tenant in ("", r.tenant_id)]
        assert sum(r["requests"] for r in narrowed) == len(mine)
        assert sum(int(r["cost_pico_usd"]) for r in narrowed) == sum(cost(r) for r in mine)


@answer("spend")
def _(store: Store) -> None:
    got = {(r["tenant_id"], r["key_id"]): (r["requests"], int(r["cost_pico_usd"])) for r in run(store, "spend")}
    want = by(lambda r: (r.tenant_id, r.key_id))
    assert got == {k: (len(v), sum(cost(r) for r in v)) for k, v in want.items()}


@answer("top_keys")
def _(store: Store) -> None:
    rows = run(store, "top_keys", limit=2)
    totals = {k: sum(cost(r) for r in v) for k, v in by(lambda r: r.key_id).items()}
    top = sorted(totals, key=lambda k: -totals[k])[:2]
    assert [r["key_id"] for r in rows] == top and [int(r["cost_pico_usd"]) for r in rows] == [totals[k] for k in top]


@answer("budget_burn")
def _(store: Store) -> None:
    rows = run(store, "budget_burn", tenant_id="t1", since_ns=T0)
    assert int(rows[-1]["total_pico_usd"]) == sum(cost(r) for r in REQUESTS if r.tenant_id == "t1")
    assert sum(int(r["cost_pico_usd"]) for r in rows) == int(rows[-1]["total_pico_usd"])


@answer("per_minute")
def _(store: Store) -> None:
    rows = run(store, "per_minute")
    assert sum(r["requests"] for r in rows) == 20 and sum(r["errors"] for r in rows) == 5
    assert sum(int(r["cost_pico_usd"]) for r in rows) == sum(cost(r) for r in REQUESTS)


@answer("cost_by_tenant")
def _(store: Store) -> None:
    got = {r["tenant_id"]: int(r["cost_pico_usd"]) for r in run(store, "cost_by_tenant")}
    assert got == {t: sum(cost(r) for r in v) for t, v in by(lambda r: r.tenant_id).items()}


@answer("cost_by_model")
def _(store: Store) -> None:
    got = {r["model"]: (r["requests"], int(r["cost_pico_usd"])) for r in run(store, "cost_by_model", tenant_id="t1")}
    t1 = [r for r in REQUESTS if r.tenant_id == "t1"]
    assert got == {m: (len(v), sum(cost(r) for r in v)) for m, v in by(lambda r: r.model, t1).items()}


@answer("by_api")
def _(store: Store) -> None:
    got = {r["api"]: r for r in run(store, "by_api")}
    assert set(got) == {"chat", "responses"}
    # Request 7 is in conflict (two rows): "responses" holds none of it, so its sums are exact.
    rs = [r for r in REQUESTS if r.api == "responses"]
    row = got["responses"]
    assert (row["requests"], row["errors"]) == (len(rs), sum(r.status >= 400 for r in rs))
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        sum(r.prompt_tokens for r in rs),
        sum(r.completion_tokens for r in rs),
    )
    assert int(row["cost_pico_usd"]) == sum(r.cost_pico_usd for r in rs)  # as recorded, before corrections
    assert_quantiles(row["latency_ms"], [r.latency_ns / MS for r in rs])
    assert got["chat"]["requests"] == 20 - len(rs)
    t2 = by(lambda r: r.api, [r for r in REQUESTS if r.tenant_id == "t2"])
    assert {r["api"]: r["requests"] for r in run(store, "by_api", tenant_id="t2")} == {a: len(v) for a, v in t2.items()}


@answer("latency_by_model")
def _(store: Store) -> None:
    got = {(r["model"], r["deployment"]): r for r in run(store, "latency_by_model")}
    for (model, dep), rs in by(lambda r: (r.model, r.deployment), [r for r in REQUESTS if r.status < 400]).items():
        assert got[(model, dep)]["requests"] == len(rs)
        assert_quantiles(got[(model, dep)]["latency_ms"], [r.latency_ns / MS for r in rs])


@answer("cache_savings")
def _(store: Store) -> None:
    got = _per_model(run(store, "cache_savings"))
    assert (got["m2"]["cache_hits"], got["m2"]["hit_rate"], got["m2"]["saved_pico_usd"]) == (1, 0.1, "500")
    assert got["m1"]["cache_hits"] == 0


@answer("zero_cost")
def _(store: Store) -> None:
    assert [(r["model"], r["deployment"], r["zero_cost"]) for r in run(store, "zero_cost")] == [("m1", "d1", 1)]


@answer("recent_requests")
def _(store: Store) -> None:
    rows = run(store, "recent_requests", tenant_id="t2", limit=3)
    assert [r["request_id"] for r in rows] == ["r19", "r18", "r17"]


@answer("corrections")
def _(store: Store) -> None:
    (row,) = run(store, "corrections", request_id="r1")
    assert (row["old_cost_pico_usd"], row["new_cost_pico_usd"], row["recost_id"]) == ("2000", "2600", "fix")


@answer("detections")
def _(store: Store) -> None:
    # One event, one row per detection, in text order.
    rows = run(store, "detections", request_id="r2")
    assert [(r["detector"], r["action"], r["location"], r["start"], r["end"]) for r in rows] == [
        ("email", "mask", "messages[0].content", 5, 21),
        ("phone", "flag", "messages[1].content", 0, 16),
    ]
    row = rows[0]
    assert row["rules_version"] == 3 and run(store, "detections", tenant_id="t2") == []


@answer("conflicts")
def _(store: Store) -> None:
    (row,) = run(store, "conflicts")
    assert (row["request_id"], row["tenant_id"], row["differs"]) == ("r7", "t1", ["status", "error_type", "error_code"])
    assert '"status":502' in row["stored_row"] and '"status":200' in row["new_row"]
    assert run(store, "conflicts", tenant_id="t2") == [] and run(store, "conflicts", request_id="r0") == []


@answer("duplicate_rows")
def _(store: Store) -> None:
    assert run(store, "duplicate_rows", since_ns=T0) == [{"duplicate_rows": 0, "conflicts": 1}]


@answer("stored_since")
def _(store: Store) -> None:
    since = REQUESTS[15].received_at_ns
    assert sorted(r["request_id"] for r in run(store, "stored_since", since_ns=since)) == [
        f"r{i}" for i in range(15, 20)
    ]


@answer("request_rows")
def _(store: Store) -> None:
    since = REQUESTS[15].received_at_ns
    got = {row["request_id"]: row for row in run(store, "request_rows", since_ns=since)}
    assert sorted(got) == [f"r{i}" for i in range(15, 20)]
    for r in REQUESTS[15:]:
        row = got[r.request_id]
        seen = (row["status"], row["error_code"], row["prompt_tokens"], row["completion_tokens"], row["cost_pico_usd"])
        assert seen == (r.status, r.error_code, r.prompt_tokens, r.completion_tokens, str(r.cost_pico_usd))


@answer("tool_calls")
@answer("tools_by_server")
@answer("tool_errors")
def _tool_queries(store: Store) -> None:
    # Only MCP calls (api "mcp") are tool calls: none of these requests is.
    # Their known answers over MCP rows: tests/integration/test_tool_calls.py.
    for name in ("tool_calls", "tools_by_server", "tool_errors"):
        assert run(store, name) == [], name


@answer("rest_calls")
def _(store: Store) -> None:
    # Only calls to REST services (api "rest") are: none of these requests is.
    # Their known answers over REST rows: tests/integration/test_rest_calls.py.
    assert run(store, "rest_calls") == []


@answer("batches")
def _(store: Store) -> None:
    # Only a batch's lines (batch_id set by the job runner) are: none of these requests is.
    # Their known answers over batch rows: tests/integration/test_units_and_batches.py.
    assert run(store, "batches") == []


@pytest.mark.parametrize("name", sorted(NAMED))
def test_each_named_query_gives_the_known_answer(store: Store, name: str) -> None:
    assert name in ANSWERS, f"named query {name!r} has no known answer in this test"
    ANSWERS[name](store)


def test_recosting_the_generated_rows_changes_nothing_when_prices_are_unchanged(store: Store) -> None:
    # Deployments d1/d2 are not in any config: every row with tokens is left as is, and said so.
    from schemas.analytics import RecostRequest
    from services.config import Config

    result = recost.recost(store, Config(), RecostRequest(since_ns=T0 - 1))
    assert result.tenants == [] and result.unpriced == sum(1 for r in REQUESTS if not r.cache_hit)


def measure(store: Store, name: str, **params: object) -> dict[str, dict]:
    named = MEASURES[name]
    bound = {k: params.get(k, default) for k, (_, default) in named.params.items()}
    columns, rows = store.query(named.sql, bound)
    return {row[0]: dict(zip(columns, row, strict=True)) for row in rows}


def test_the_alert_rules_measure_the_known_values(store: Store) -> None:
    rates = measure(store, "error_rate", minutes=60, by="model", min_requests=5)
    for model, rs in by(lambda r: r.model).items():
        assert rates[model]["value"] == pytest.approx(sum(r.status >= 400 for r in rs) / len(rs))
    assert measure(store, "error_rate", minutes=60, min_requests=11) == {}  # too few for a verdict
    p95 = measure(store, "latency_p95", minutes=60, by="deployment", min_requests=1)
    for dep, rs in by(lambda r: r.deployment, [r for r in REQUESTS if r.status < 400]).items():
        values = [r.latency_ns / MS for r in rs]
        assert min(values) <= p95[dep]["value"] <= max(values) and p95[dep]["volume"] == len(rs)
    assert {k: v["value"] for k, v in measure(store, "zero_cost", minutes=60).items()} == {"m1": 1.0}
    # All spend is in the last hour and none before it: every spending key's ratio is unbounded.
    spikes = measure(store, "key_spike", trailing_hours=24, measure="cost")
    spent = {f"{r.tenant_id}/{r.key_id}" for r in REQUESTS if cost(r) > 0}
    assert set(spikes) == spent and all(v["value"] == float("inf") for v in spikes.values())
    tokens = measure(store, "key_spike", trailing_hours=24, measure="tokens", min_value=10_000)
    assert tokens == {}  # no key used that many tokens in the hour
