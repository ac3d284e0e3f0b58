"""Named analytics queries, answered over NATS so tools need no ClickHouse driver."""

from __future__ import annotations

import msgspec

from schemas.analytics import QueryRequest


class Named(msgspec.Struct):
    sql: str
    # param name -> (ClickHouse type, default)
    params: dict[str, tuple[str, int | str]]


NAMED: dict[str, Named] = {
    "stats": Named(
        sql="""
        SELECT
            model,
            count() AS requests,
            countIf(status >= 400) AS errors,
            sum(prompt_tokens) AS prompt_tokens,
            sum(completion_tokens) AS completion_tokens,
            toString(sum(cost_pico_usd)) AS cost_pico_usd,
            arrayMap(x -> round(x, 2), quantiles(0.5, 0.95, 0.99)(latency_ns / 1e6)) AS latency_ms,
            arrayMap(x -> round(x, 2), quantilesIf(0.5, 0.95, 0.99)(ttft_ns / 1e6, status < 400)) AS ttft_ms
        FROM requests FINAL
        WHERE ts >= now64(9) - toIntervalMinute({minutes:UInt32})
        GROUP BY model
        ORDER BY requests DESC, model
        """,
        params={"minutes": ("UInt32", 60)},
    ),
    # Medians of where the time went, per streamed or not, over a window.
    "breakdown": Named(
        sql="""
        SELECT
            stream,
            count() AS requests,
            round(quantile(0.5)(latency_ns) / 1e6, 3) AS latency_ms,
            round(quantile(0.5)(ttft_ns) / 1e6, 3) AS ttft_ms,
            round(quantile(0.5)(ingress_ns) / 1e6, 3) AS ingress_ms,
            round(quantile(0.5)(policy_ns) / 1e6, 3) AS policy_ms,
            round(quantile(0.5)(route_ns) / 1e6, 3) AS route_ms,
            round(quantile(0.5)(provider_ns) / 1e6, 3) AS provider_ms,
            round(quantile(0.5)(bus_ns) / 1e6, 3) AS bus_ms,
            round(quantile(0.5)(upstream_ttfb_ns) / 1e6, 3) AS upstream_ttfb_ms,
            round(quantile(0.5)(upstream_stream_ns) / 1e6, 3) AS upstream_stream_ms
        FROM requests FINAL
        WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
          AND ts < fromUnixTimestamp64Nano(toInt64({until_ns:UInt64}))
        GROUP BY stream
        ORDER BY stream
        """,
        params={"since_ns": ("UInt64", 0), "until_ns": ("UInt64", 2**63 - 1)},
    ),
    # Median time per part for each key: what one key's settings (limits,
    # redaction) cost, measured inside the gateway rather than by a client.
    "breakdown_by_key": Named(
        sql="""
        SELECT
            key_id,
            count() AS requests,
            round(quantile(0.5)(latency_ns) / 1e6, 3) AS latency_ms,
            round(quantile(0.5)(policy_ns) / 1e3, 1) AS policy_us,
            round(quantile(0.5)(route_ns) / 1e3, 1) AS route_us,
            round(quantile(0.5)(provider_ns) / 1e3, 1) AS provider_us,
            round(quantile(0.5)(ingress_ns) / 1e3, 1) AS ingress_us,
            round(quantile(0.5)(bus_ns) / 1e3, 1) AS bus_us
        FROM requests FINAL
        WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
          AND ts < fromUnixTimestamp64Nano(toInt64({until_ns:UInt64}))
        GROUP BY key_id
        ORDER BY key_id
        """,
        params={"since_ns": ("UInt64", 0), "until_ns": ("UInt64", 2**63 - 1)},
    ),
    # Per model name: latency and the routing and cache stages' time, p50
    # and p99 (what a group's strategy or the cache costs, measured inside).
    "breakdown_by_model": Named(
        sql="""
        SELECT
            model,
            count() AS requests,
            countIf(cache_hit) AS cache_hits,
            round(quantile(0.5)(latency_ns) / 1e6, 3) AS latency_p50_ms,
            round(quantile(0.99)(latency_ns) / 1e6, 3) AS latency_p99_ms,
            round(quantile(0.5)(route_ns) / 1e3, 1) AS route_p50_us,
            round(quantile(0.99)(route_ns) / 1e3, 1) AS route_p99_us,
            round(quantile(0.5)(cache_ns) / 1e3, 1) AS cache_p50_us,
            round(quantile(0.99)(cache_ns) / 1e3, 1) AS cache_p99_us,
            round(quantile(0.5)(provider_ns) / 1e3, 1) AS provider_p50_us,
            round(quantile(0.5)(upstream_ttfb_ns) / 1e3, 1) AS upstream_p50_us
        FROM requests FINAL
        WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
          AND ts < fromUnixTimestamp64Nano(toInt64({until_ns:UInt64}))
        GROUP BY model
        ORDER BY model
        """,
        params={"since_ns": ("UInt64", 0), "until_ns": ("UInt64", 2**63 - 1)},
    ),
    "request": Named(
        sql="SELECT * FROM requests FINAL WHERE request_id = {request_id:String}",
        params={"request_id": ("String", "")},
    ),
    "attempts": Named(
        sql="SELECT * FROM attempts FINAL WHERE request_id = {request_id:String} ORDER BY ts",
        params={"request_id": ("String", "")},
    ),
    # Alert events (e.g. zero_cost) of the last N minutes, newest first.
    "alerts": Named(
        sql="""
        SELECT request_id, ts, JSONExtractString(body, 'alert') AS alert,
               JSONExtractString(body, 'model') AS model, JSONExtractString(body, 'detail') AS detail,
               JSONExtractString(body, 'deployment') AS deployment
        FROM events FINAL
        WHERE kind = 'alert' AND ts >= now64(9) - toIntervalMinute({minutes:UInt32})
        ORDER BY ts DESC
        """,
        params={"minutes": ("UInt32", 60)},
    ),
    # How requests ended in a window: per status and error code, with tokens and cost.
    "outcomes": Named(
        sql="""
        SELECT status, error_code, count() AS requests, sum(prompt_tokens) AS prompt_tokens,
               sum(completion_tokens) AS completion_tokens, toString(sum(cost_pico_usd)) AS cost_pico_usd
        FROM requests FINAL
        WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
          AND ts < fromUnixTimestamp64Nano(toInt64({until_ns:UInt64}))
        GROUP BY status, error_code
        ORDER BY status, error_code
        """,
        params={"since_ns": ("UInt64", 0), "until_ns": ("UInt64", 2**63 - 1)},
    ),
    # What the sink could not store, newest first (the stream kept draining past them).
    "dead_letters": Named(
        sql="""
        SELECT ts, subject, request_id, reason, payload
        FROM dead_letters FINAL
        WHERE ts >= now64(9) - toIntervalMinute({minutes:UInt32})
        ORDER BY ts DESC
        """,
        params={"minutes": ("UInt32", 60)},
    ),
    # Control-plane changes, newest first; tenant "" means every tenant.
    "audit": Named(
        sql="""
        SELECT ts, actor, action, record_type, record_id, tenant_id, before, after
        FROM audit FINAL
        WHERE ts >= now64(9) - toIntervalMinute({minutes:UInt32})
          AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
        ORDER BY ts DESC
        LIMIT {limit:UInt32}
        """,
        params={"minutes": ("UInt32", 60 * 24), "tenant_id": ("String", ""), "limit": ("UInt32", 1000)},
    ),
    # Spend per key (or per tenant) since a time: what the budgets count, as recorded.
    "spend": Named(
        sql="""
        SELECT tenant_id, key_id, count() AS requests, toString(sum(cost_pico_usd)) AS cost_pico_usd,
               sum(prompt_tokens + completion_tokens) AS tokens
        FROM requests FINAL
        WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
          AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
        GROUP BY tenant_id, key_id
        ORDER BY tenant_id, key_id
        """,
        params={"since_ns": ("UInt64", 0), "tenant_id": ("String", "")},
    ),
    # Each deployment's recent tries: how many, how many failed, and how fast
    # its successes began (``sluice routes``).
    "deployments": Named(
        sql="""
        SELECT deployment, count() AS tries, countIf(status != 200) AS failed,
               round(quantileIf(0.5)(ttfb_ns, status = 200) / 1e6, 1) AS p50_ttfb_ms,
               round(quantileIf(0.99)(ttfb_ns, status = 200) / 1e6, 1) AS p99_ttfb_ms
        FROM attempts FINAL
        WHERE ts >= now64(9) - toIntervalMinute({minutes:UInt32})
        GROUP BY deployment
        ORDER BY deployment
        """,
        params={"minutes": ("UInt32", 15)},
    ),
    # A/B arms side by side: requests, errors, cost and latency per arm of each
    # split group since a time; model_group "" means every group.
    "arms": Named(
        sql="""
        SELECT model_group, arm, count() AS requests, countIf(status != 200) AS errors,
               -- not "AS cost_pico_usd": ClickHouse would read that alias in the average below
               toString(sum(cost_pico_usd)) AS total_cost_pico_usd,
               toString(intDiv(sum(cost_pico_usd), count())) AS avg_cost_pico_usd,
               round(quantile(0.5)(latency_ns) / 1e6, 1) AS p50_latency_ms,
               round(quantile(0.99)(latency_ns) / 1e6, 1) AS p99_latency_ms
        FROM requests FINAL
        WHERE arm != '' AND ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
          AND ({model_group:String} = '' OR model_group = {model_group:String})
        GROUP BY model_group, arm
        ORDER BY model_group, arm
        """,
        params={"since_ns": ("UInt64", 0), "model_group": ("String", "")},
    ),
    # One prompt-API call (the parent row), and the requests its steps made.
    "api_call": Named(
        sql="SELECT * FROM api_calls FINAL WHERE request_id = {request_id:String}",
        params={"request_id": ("String", "")},
    ),
    "children": Named(
        sql="SELECT * FROM requests FINAL WHERE parent_id = {parent_id:String} ORDER BY ts",
        params={"parent_id": ("String", "")},
    ),
    # A prompt's versions side by side (a rollout, a rollback): calls, errors,
    # answers that broke the output schema, cost and latency per version since a time.
    "prompt_versions": Named(
        sql="""
        SELECT prompt_name, prompt_version, count() AS calls, countIf(status != 200) AS errors,
               sum(schema_failures) AS schema_failures,
               countIf(error_code = 'output_schema_mismatch') AS schema_errors,
               toString(sum(cost_pico_usd)) AS total_cost_pico_usd,
               toString(intDiv(sum(cost_pico_usd), count())) AS avg_cost_pico_usd,
               round(quantile(0.5)(latency_ns) / 1e6, 1) AS p50_latency_ms,
               round(quantile(0.99)(latency_ns) / 1e6, 1) AS p99_latency_ms
        FROM api_calls FINAL
        WHERE prompt_name != '' AND ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
          AND ({prompt:String} = '' OR prompt_name = {prompt:String})
        GROUP BY prompt_name, prompt_version
        ORDER BY prompt_name, prompt_version
        """,
        params={"since_ns": ("UInt64", 0), "prompt": ("String", "")},
    ),
    # Durable jobs' requests: rows per request (a job run twice would show
    # 2) and what each cost.
    "job_requests": Named(
        sql="""
        SELECT request_id, count() AS rows, toString(sum(cost_pico_usd)) AS cost_pico_usd
        FROM requests FINAL
        WHERE origin = 'job'
        GROUP BY request_id
        ORDER BY request_id
        """,
        params={},
    ),
    "event_counts": Named(
        sql="SELECT kind, count() AS events FROM events FINAL GROUP BY kind ORDER BY kind",
        params={},
    ),
}


class UnknownQuery(ValueError):
    pass


def bind(request: QueryRequest) -> tuple[str, dict[str, int | str]]:
    named = NAMED.get(request.name)
    if named is None:
        raise UnknownQuery(f"unknown query {request.name!r}; known: {sorted(NAMED)}")
    params: dict[str, int | str] = {}
    for key, (type_, default) in named.params.items():
        value = request.params.get(key, default)
        params[key] = int(value) if type_.startswith("UInt") else str(value)
    return named.sql, params
