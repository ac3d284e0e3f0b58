from __future__ import annotations

from schemas.chat import Cost, Usage
from schemas.envelope import Span
from schemas.replies import Failure, Final, Timing
from services.records import request_event, time_split

MS = 1_000_000


def test_time_split_accounts_for_every_nanosecond() -> None:
    timing = Timing(
        spans=[Span("policy", 1 * MS, 2 * MS), Span("route", 3 * MS, 4 * MS), Span("provider", 5 * MS, 60 * MS)],
        upstream_start_ns=6 * MS,
        upstream_first_byte_ns=20 * MS,
        upstream_end_ns=58 * MS,
    )
    split = time_split(timing, [Span("ingress", 0, 1 * MS), Span("ingress", 61 * MS, 62 * MS)], latency_ns=62 * MS)
    assert split["ingress_ns"] == 2 * MS
    assert split["policy_ns"] == split["route_ns"] == 1 * MS
    assert split["upstream_ttfb_ns"] == 14 * MS and split["upstream_stream_ns"] == 38 * MS
    assert split["provider_ns"] == 55 * MS - 52 * MS
    assert split["bus_ns"] == 62 * MS - (2 + 1 + 1 + 55) * MS
    parts = (
        "ingress_ns",
        "policy_ns",
        "route_ns",
        "redact_ns",
        "provider_ns",
        "bus_ns",
        "upstream_ttfb_ns",
        "upstream_stream_ns",
    )
    assert sum(split[k] for k in parts) == 62 * MS


def test_success_and_failure_rows() -> None:
    final = Final(
        id="r",
        seq=0,
        model="m",
        usage=Usage(prompt_tokens=3, completion_tokens=4, source="counted"),
        cost=Cost(input=90, cached_input=4, output=5),
        tenant_id="t",
        key_id="k",
        deployment="d",
        provider="openai",
    )
    ok = request_event(
        request_id="r",
        received_at_ns=0,
        origin="http",
        api="chat",
        model="m",
        stream=True,
        done_ns=10,
        reply=final,
        ttft_ns=4,
    )
    assert (ok.status, ok.prompt_tokens, ok.usage_source, ok.cost_pico_usd, ok.ttft_ns) == (200, 3, "counted", 99, 4)
    assert (ok.cost_input_pico_usd, ok.cost_cached_input_pico_usd, ok.cost_output_pico_usd) == (90, 4, 5)
    failure = Failure(id="r", seq=0, status=429, type="rate_limit_error", code="upstream_rate_limited", message="x")
    bad = request_event(
        request_id="r", received_at_ns=0, origin="nats", api="chat", model="m", stream=False, done_ns=10, reply=failure
    )
    assert (bad.status, bad.error_type, bad.cost_pico_usd, bad.ttft_ns) == (429, "rate_limit_error", 0, 10)
