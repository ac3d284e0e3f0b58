-- Issue 11: a per-minute rollup by tenant, key, model and deployment, for
-- the alert rules (error rates and p95 over the last few minutes, a key's
-- last hour) and live charts. Kept as long as raw rows.
CREATE TABLE IF NOT EXISTS requests_minutely (
    minute DateTime('UTC'),
    tenant_id LowCardinality(String),
    key_id LowCardinality(String),
    model LowCardinality(String),
    deployment LowCardinality(String),
    requests AggregateFunction(count),
    errors AggregateFunction(countIf, UInt8),
    tokens AggregateFunction(sum, UInt64),
    cost_pico_usd AggregateFunction(sum, UInt64),
    zero_cost_successes AggregateFunction(countIf, UInt8),
    success_latency_ms AggregateFunction(quantilesIf(0.5, 0.95, 0.99), Float64, UInt8)
) ENGINE = AggregatingMergeTree
ORDER BY (minute, tenant_id, key_id, model, deployment);

CREATE MATERIALIZED VIEW IF NOT EXISTS requests_minutely_mv TO requests_minutely AS
SELECT
    toStartOfMinute(ts) AS minute,
    tenant_id,
    key_id,
    model,
    deployment,
    countState() AS requests,
    countIfState(status >= 400) AS errors,
    sumState(toUInt64(prompt_tokens) + completion_tokens) AS tokens,
    sumState(cost_pico_usd) AS cost_pico_usd,
    countIfState(status < 400 AND requests.cost_pico_usd = 0 AND NOT cache_hit AND prompt_tokens + completion_tokens > 0)
        AS zero_cost_successes,
    quantilesIfState(0.5, 0.95, 0.99)(latency_ns / 1e6, status < 400) AS success_latency_ms
FROM requests
GROUP BY minute, tenant_id, key_id, model, deployment;

INSERT INTO requests_minutely
SELECT
    toStartOfMinute(ts) AS minute,
    tenant_id,
    key_id,
    model,
    deployment,
    countState() AS requests,
    countIfState(status >= 400) AS errors,
    sumState(toUInt64(prompt_tokens) + completion_tokens) AS tokens,
    sumState(cost_pico_usd) AS cost_pico_usd,
    countIfState(status < 400 AND requests.cost_pico_usd = 0 AND NOT cache_hit AND prompt_tokens + completion_tokens > 0)
        AS zero_cost_successes,
    quantilesIfState(0.5, 0.95, 0.99)(latency_ns / 1e6, status < 400) AS success_latency_ms
FROM requests FINAL
GROUP BY minute, tenant_id, key_id, model, deployment;
