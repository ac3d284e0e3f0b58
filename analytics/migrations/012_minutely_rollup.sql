-- Issue 11: a per-minute rollup by tenant, key, model and deployment, for
-- the alert rules (error rates and p95 over the last few minutes, a key's
-- last hour), `sluice stats` and live charts. Kept as long as raw rows.
CREATE TABLE IF NOT EXISTS requests_minutely (
    minute DateTime('UTC'),
    tenant_id LowCardinality(String),
    key_id LowCardinality(String),
    model LowCardinality(String),
    deployment LowCardinality(String),
    requests AggregateFunction(count),
    errors AggregateFunction(countIf, UInt8),
    prompt_tokens AggregateFunction(sum, UInt64),
    completion_tokens AggregateFunction(sum, UInt64),
    cost_pico_usd AggregateFunction(sum, UInt64),
    cache_hits AggregateFunction(countIf, UInt8),
    zero_cost_successes AggregateFunction(countIf, UInt8),
    latency_ms AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64),
    success_latency_ms AggregateFunction(quantilesIf(0.5, 0.95, 0.99), Float64, UInt8),
    success_ttft_ms AggregateFunction(quantilesIf(0.5, 0.95, 0.99), Float64, UInt8)
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
    sumState(toUInt64(prompt_tokens)) AS prompt_tokens,
    sumState(toUInt64(completion_tokens)) AS completion_tokens,
    sumState(cost_pico_usd) AS cost_pico_usd,
    countIfState(cache_hit) AS cache_hits,
    countIfState(status < 400 AND requests.cost_pico_usd = 0 AND NOT cache_hit
                 AND requests.prompt_tokens + requests.completion_tokens > 0) AS zero_cost_successes,
    quantilesState(0.5, 0.95, 0.99)(latency_ns / 1e6) AS latency_ms,
    quantilesIfState(0.5, 0.95, 0.99)(latency_ns / 1e6, status < 400) AS success_latency_ms,
    quantilesIfState(0.5, 0.95, 0.99)(ttft_ns / 1e6, status < 400) AS success_ttft_ms
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
    sumState(toUInt64(prompt_tokens)) AS prompt_tokens,
    sumState(toUInt64(completion_tokens)) AS completion_tokens,
    sumState(cost_pico_usd) AS cost_pico_usd,
    countIfState(cache_hit) AS cache_hits,
    countIfState(status < 400 AND requests.cost_pico_usd = 0 AND NOT cache_hit
                 AND requests.prompt_tokens + requests.completion_tokens > 0) AS zero_cost_successes,
    quantilesState(0.5, 0.95, 0.99)(latency_ns / 1e6) AS latency_ms,
    quantilesIfState(0.5, 0.95, 0.99)(latency_ns / 1e6, status < 400) AS success_latency_ms,
    quantilesIfState(0.5, 0.95, 0.99)(ttft_ns / 1e6, status < 400) AS success_ttft_ms
FROM requests FINAL
GROUP BY minute, tenant_id, key_id, model, deployment;
