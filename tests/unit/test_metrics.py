from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from schemas.envelope import Span
from schemas.events import RequestEvent
from services.bus import metrics


def histogram_samples(h: Histogram) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in h.collect() for s in m.samples}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50))
def test_observing_in_one_batch_equals_observing_one_by_one(values: list[float]) -> None:
    buckets = (0.001, 0.01, 0.1, 1, 10)
    one = Histogram("one_seconds", "x", ["stage"], buckets=buckets, registry=CollectorRegistry())
    many = Histogram("one_seconds", "x", ["stage"], buckets=buckets, registry=CollectorRegistry())
    child = one.labels("a")
    for v in values:
        child.observe(v)
    metrics._observe_all(many.labels("a"), values)
    got, want = histogram_samples(many), histogram_samples(one)
    assert got.keys() == want.keys()
    for key in want:
        assert abs(got[key] - want[key]) <= 1e-9 * max(1.0, abs(want[key])), key


def test_a_request_is_counted_at_the_next_flush_with_each_stage_it_visited() -> None:
    metrics.flush()

    def count(stage: str) -> float:
        return metrics.STAGE_SECONDS.labels(stage)._sum.get()

    before_requests = metrics.REQUESTS.labels("chat", "429")._value.get()
    before_policy = count("policy")
    event = RequestEvent(
        event_id="e",
        request_id="r",
        received_at_ns=0,
        origin="http",
        api="chat",
        model="m",
        status=429,
        error_type="rate_limit_error",
        error_code="rate_limited",
        latency_ns=2_000_000,
        spans=[Span("ingress", 0, 100_000), Span("policy", 200_000, 700_000)],
    )
    metrics.request_ended(event)
    assert metrics.REQUESTS.labels("chat", "429")._value.get() == before_requests  # not yet: at the flush
    metrics.flush()
    assert metrics.REQUESTS.labels("chat", "429")._value.get() == before_requests + 1
    assert abs(count("policy") - before_policy - 0.0005) < 1e-12
