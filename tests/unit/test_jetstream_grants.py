"""Least privilege on JetStream, read from the permissions nats-server is
given: no process role but ``admin`` may purge or delete a stream, a bucket
or a consumer, and each bucket and consumer is written or taken only by the
roles whose job that is."""

from __future__ import annotations

import pytest

from analytics import lease
from schemas import subjects
from services.bus import credentials
from services.bus.jetstream_grants import ADMIN_API_BUCKETS, JETSTREAM, grants_of

STREAMS = [
    subjects.EVENTS_STREAM,
    subjects.JOBS_STREAM,
    subjects.JOB_REPLIES_STREAM,
    subjects.RATES_STREAM,
    subjects.SPEND_STREAM,
    *(
        f"KV_{b}"
        for b in (
            subjects.KV_KEYS,
            subjects.KV_TENANTS,
            subjects.KV_MODELS,
            subjects.KV_SUBSCRIPTIONS,
            subjects.KV_APPROVAL_RULES,
            subjects.KV_KEY_USAGE,
            subjects.KV_PROMPTS,
            subjects.KV_PROMPT_VERSIONS,
            subjects.KV_CACHE,
            subjects.KV_HEALTH,
            subjects.KV_JOB_RESULTS,
            subjects.KV_ALERTS,
            subjects.KV_ALERT_DELIVERIES,
            subjects.KV_REQUEST_IDS,
            lease.BUCKET,
        )
    ),
]
PROCESS_ROLES = [r for r in credentials.ROLES if r != "admin"]


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(want) == len(got)


def may_publish(role: str, subject: str) -> bool:
    return any(matches(p, subject) for p in credentials.ROLES[role].publish)


def may_subscribe(role: str, subject: str) -> bool:
    return any(matches(p, subject) for p in credentials.ROLES[role].subscribe)


def test_matching_follows_nats() -> None:
    assert matches("$JS.API.>", "$JS.API.STREAM.PURGE.SLUICE_EVENTS")
    assert matches("$JS.API.CONSUMER.INFO.KV_x.*", "$JS.API.CONSUMER.INFO.KV_x.abc")
    assert not matches("$JS.API.CONSUMER.INFO.KV_x.*", "$JS.API.CONSUMER.INFO.KV_x")
    assert not matches("$KV.sluice_keys.>", "$KV.sluice_keys")
    assert not matches("$JS.API.STREAM.INFO.KV_a", "$JS.API.STREAM.INFO.KV_ab")


@pytest.mark.parametrize("role", PROCESS_ROLES)
def test_no_process_role_may_purge_or_delete(role: str) -> None:
    assert not may_publish(role, "$JS.API.ANYTHING")
    assert not any(p.startswith("$JS.API.>") or p in (">", "$JS.>") for p in credentials.ROLES[role].publish)
    for stream in STREAMS:
        for subject in (
            f"$JS.API.STREAM.PURGE.{stream}",
            f"$JS.API.STREAM.DELETE.{stream}",
            f"$JS.API.STREAM.MSG.DELETE.{stream}",
            f"$JS.API.STREAM.UPDATE.{stream}",
            f"$JS.API.STREAM.CREATE.{stream}",
            f"$JS.API.CONSUMER.DELETE.{stream}.{subjects.SINK_DURABLE}",
            f"$JS.API.CONSUMER.DELETE.{stream}.{subjects.jobs_consumer('demo')}",
        ):
            assert not may_publish(role, subject), (role, subject)


def test_admin_keeps_everything() -> None:
    assert may_publish("admin", f"$JS.API.STREAM.PURGE.{subjects.EVENTS_STREAM}")
    assert grants_of("admin") == []


@pytest.mark.parametrize("bucket", [*ADMIN_API_BUCKETS, subjects.KV_MODELS])
def test_control_records_are_written_by_the_admin_api_alone(bucket: str) -> None:
    key = f"$KV.{bucket}.demo"
    writers = {r for r in PROCESS_ROLES if may_publish(r, key)}
    assert writers == (set() if bucket == subjects.KV_MODELS else {"ingress"})


@pytest.mark.parametrize(
    ("bucket", "writers"),
    [
        (subjects.KV_KEY_USAGE, {"policy", "pipeline"}),
        (subjects.KV_REQUEST_IDS, {"policy", "pipeline"}),
        (subjects.KV_HEALTH, {"route", "pipeline"}),
        (subjects.KV_CACHE, {"cache", "pipeline"}),
        (subjects.KV_JOB_RESULTS, {"ingress"}),
        (subjects.KV_ALERTS, {"sink"}),
        (subjects.KV_ALERT_DELIVERIES, {"sink"}),
        (lease.BUCKET, {"sink"}),
    ],
)
def test_each_bucket_is_written_only_by_its_roles(bucket: str, writers: set[str]) -> None:
    assert {r for r in PROCESS_ROLES if may_publish(r, f"$KV.{bucket}.some-key")} == writers


def test_stages_follow_the_control_buckets_they_read() -> None:
    consumer = f"$JS.API.CONSUMER.CREATE.KV_{subjects.KV_TENANTS}"
    assert {r for r in PROCESS_ROLES if may_publish(r, consumer)} == {"ingress", "policy", "redact", "pipeline"}
    assert may_publish("redact", f"$JS.API.STREAM.INFO.KV_{subjects.KV_TENANTS}")
    assert not may_publish("redact", f"$JS.API.STREAM.INFO.KV_{subjects.KV_KEYS}")
    assert not may_publish("provider", f"$JS.API.STREAM.INFO.KV_{subjects.KV_TENANTS}")


def test_each_durable_consumer_is_taken_by_its_role_alone() -> None:
    events = f"$JS.API.CONSUMER.MSG.NEXT.{subjects.EVENTS_STREAM}.{subjects.SINK_DURABLE}"
    jobs = f"$JS.API.CONSUMER.MSG.NEXT.{subjects.JOBS_STREAM}.{subjects.jobs_consumer('demo')}"
    assert {r for r in PROCESS_ROLES if may_publish(r, events)} == {"sink"}
    assert {r for r in PROCESS_ROLES if may_publish(r, jobs)} == {"ingress"}
    assert may_publish("sink", f"$JS.ACK.{subjects.EVENTS_STREAM}.{subjects.SINK_DURABLE}.1.2.3.4.5")
    assert not may_publish("sink", f"$JS.ACK.{subjects.JOBS_STREAM}.{subjects.jobs_consumer('demo')}.1.2.3.4.5")
    # Nobody but the sink may make a consumer on the events stream, not even an ephemeral one.
    assert {r for r in PROCESS_ROLES if may_publish(r, f"$JS.API.CONSUMER.CREATE.{subjects.EVENTS_STREAM}")} == set()


def test_counters_are_added_to_by_the_request_path_alone() -> None:
    counter = f"{subjects.QUOTA}.rate.key.demo.rpm.1"
    assert {r for r in PROCESS_ROLES if may_publish(r, counter)} == set(PROCESS_ROLES) - {"sink"}
    spend = f"$JS.API.DIRECT.GET.{subjects.SPEND_STREAM}.{subjects.QUOTA}.spend.key.demo"
    assert {r for r in PROCESS_ROLES if may_publish(r, spend)} == {"ingress", "sink"}


def test_the_fence_goes_from_the_ingress_to_the_providers_and_policy() -> None:
    # Policy hears it too: a copy fenced off while it waited there is not admitted.
    assert {r for r in PROCESS_ROLES if may_publish(r, subjects.CONTROL_FENCE)} == {"ingress"}
    assert {r for r in PROCESS_ROLES if may_subscribe(r, subjects.CONTROL_FENCE)} == {"policy", "provider", "pipeline"}


def test_the_table_names_every_process_role_but_the_pipeline() -> None:
    # The pipeline takes what its stages may (``_hosting``), so it needs no row.
    assert set(JETSTREAM) == set(PROCESS_ROLES) - {"pipeline"}
    assert [(g.does, g.on) for g in grants_of("redact")] == [
        ("follows", subjects.KV_TENANTS),
        ("adds to", f"{subjects.RATES_STREAM}, {subjects.SPEND_STREAM}"),
    ]


def test_the_sink_may_what_its_lease_needs() -> None:
    # ``analytics.lease`` lists what nats-py sends for the lease.
    assert all(may_publish("sink", s.replace(">", "writer")) for s in lease.PUBLISH)
