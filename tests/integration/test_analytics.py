"""What lands in ClickHouse: the wide requests row, attempts, raw events."""

from __future__ import annotations

import time

import httpx

from tests.stack import DEMO_KEY, Stack


def chat(stack: Stack, content: str, stream: bool = False) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "demo-model", "stream": stream, "messages": [{"role": "user", "content": content}]},
        headers={"authorization": f"Bearer {DEMO_KEY}"},
        timeout=20,
    )


def test_requests_row_explains_where_the_time_went(stack: Stack) -> None:
    resp = chat(stack, "time me [mock:latency_ms=200] [mock:chunks=5] [mock:chunk_ms=50]", stream=True)
    assert resp.status_code == 200
    row = stack.request_row(resp.headers["x-request-id"])
    ms = {k: v / 1e6 for k, v in row.items() if k.endswith("_ns")}
    assert ms["upstream_ttfb_ns"] >= 190  # the mock's latency before the first chunk
    assert ms["upstream_stream_ns"] >= 190  # four 50 ms gaps
    assert ms["ttft_ns"] >= ms["upstream_ttfb_ns"]
    for stage in ("ingress_ns", "policy_ns", "route_ns", "provider_ns"):
        assert 0 < ms[stage] < 100, stage
    assert row["redact_ns"] == 0  # tenant without rules never visits redaction
    parts = sum(
        ms[k]
        for k in (
            "ingress_ns",
            "policy_ns",
            "route_ns",
            "provider_ns",
            "bus_ns",
            "upstream_ttfb_ns",
            "upstream_stream_ns",
        )
    )
    assert abs(parts - ms["latency_ns"]) < 1.0
    assert row["stream"] is True and row["deployment"] == "demo-model" and row["provider"] == "openai"


def test_every_stage_visit_and_attempt_is_recorded(stack: Stack) -> None:
    resp = chat(stack, "events [mock:chunks=2]")
    rid = resp.headers["x-request-id"]
    stack.request_row(rid)
    attempts = stack.query("attempts", request_id=rid)
    rows = [dict(zip(attempts["columns"], r, strict=True)) for r in attempts["rows"]]
    assert len(rows) == 1 and rows[0]["status"] == 200 and rows[0]["upstream_model"] == "gpt-3.5-turbo"
    stages = stack.query("stages", request_id=rid)
    visits = [dict(zip(stages["columns"], r, strict=True)) for r in stages["rows"]]
    assert [(v["stage"], v["outcome"]) for v in visits] == [
        ("ingress", "forward"),
        ("policy", "forward"),
        ("route", "forward"),
        ("provider", "reply"),
    ]
    assert all(v["duration_ns"] > 0 for v in visits)
    assert [v["start_ns"] for v in visits] == sorted(v["start_ns"] for v in visits)
    counts = dict(stack.query("event_counts")["rows"])
    assert counts["attempt"] >= 1 and counts["request"] >= 1


def test_failed_upstream_attempt_is_recorded(stack: Stack) -> None:
    resp = chat(stack, "fail [mock:status=503]")
    assert resp.status_code == 503
    rid = resp.headers["x-request-id"]
    row = stack.request_row(rid)
    assert row["error_type"] == "upstream_error" and row["status"] == 503
    attempts = stack.query("attempts", request_id=rid)
    status = attempts["columns"].index("status")
    assert [r[status] for r in attempts["rows"]] == [503]


def test_unknown_query_is_an_error_not_a_crash(stack: Stack) -> None:
    result = stack.query("drop_everything")
    assert "unknown query" in result["error"]
    assert stack.query("event_counts")["error"] is None


def test_priced_request_that_cost_nothing_raises_an_alert(stack: Stack) -> None:
    # The upstream reports zero tokens: the row costs nothing, which for a
    # priced model means the bill is wrong; an alert event says so.
    resp = chat(stack, "free lunch [mock:zero_usage]")
    assert resp.status_code == 200
    request_id = resp.headers["x-request-id"]
    row = stack.request_row(request_id)
    assert row["cost_pico_usd"] == 0 and row["usage_source"] == "reported"
    normal = chat(stack, "paid lunch")
    stack.request_row(normal.headers["x-request-id"])
    deadline = time.monotonic() + 30  # the alert comes from another process's event batch
    while True:
        alerts = stack.query("alerts", minutes=10)
        assert alerts["error"] is None
        by_request = {r[0]: dict(zip(alerts["columns"], r, strict=True)) for r in alerts["rows"]}
        if request_id in by_request or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert by_request[request_id]["alert"] == "zero_cost"
    assert by_request[request_id]["model"] == "demo-model"
    assert "gpt-3.5-turbo" in by_request[request_id]["detail"]
    assert normal.headers["x-request-id"] not in by_request
