-- Issue 11: rollups per hour by tenant, key, model, deployment, provider and
-- status, for dashboards and trends. They are exact: the sink inserts each
-- event once (it leaves out rows already stored when a batch comes again),
-- so the views that feed them see each request once; requests_per_minute
-- (migration 002) is exact from here on too.
CREATE TABLE IF NOT EXISTS requests_hourly (
    hour DateTime('UTC'),
    tenant_id LowCardinality(String),
    key_id LowCardinality(String),
    model LowCardinality(String),
    deployment LowCardinality(String),
    provider LowCardinality(String),
    status UInt16,
    requests AggregateFunction(count),
    prompt_tokens AggregateFunction(sum, UInt64),
    completion_tokens AggregateFunction(sum, UInt64),
    cost_pico_usd AggregateFunction(sum, UInt64),
    cache_hits AggregateFunction(countIf, UInt8),
    cost_saved_pico_usd AggregateFunction(sum, UInt64),
    latency_ms AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64),
    ttft_ms AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64)
) ENGINE = AggregatingMergeTree
ORDER BY (hour, tenant_id, key_id, model, deployment, provider, status);

CREATE MATERIALIZED VIEW IF NOT EXISTS requests_hourly_mv TO requests_hourly AS
SELECT
    toStartOfHour(ts) AS hour,
    tenant_id,
    key_id,
    model,
    deployment,
    provider,
    status,
    countState() AS requests,
    sumState(toUInt64(prompt_tokens)) AS prompt_tokens,
    sumState(toUInt64(completion_tokens)) AS completion_tokens,
    sumState(cost_pico_usd) AS cost_pico_usd,
    countIfState(cache_hit) AS cache_hits,
    sumState(cost_saved_pico_usd) AS cost_saved_pico_usd,
    quantilesState(0.5, 0.95, 0.99)(latency_ns / 1e6) AS latency_ms,
    quantilesState(0.5, 0.95, 0.99)(ttft_ns / 1e6) AS ttft_ms
FROM requests
GROUP BY hour, tenant_id, key_id, model, deployment, provider, status;

-- What was stored before this migration, once.
INSERT INTO requests_hourly
SELECT
    toStartOfHour(ts) AS hour,
    tenant_id,
    key_id,
    model,
    deployment,
    provider,
    status,
    countState() AS requests,
    sumState(toUInt64(prompt_tokens)) AS prompt_tokens,
    sumState(toUInt64(completion_tokens)) AS completion_tokens,
    sumState(cost_pico_usd) AS cost_pico_usd,
    countIfState(cache_hit) AS cache_hits,
    sumState(cost_saved_pico_usd) AS cost_saved_pico_usd,
    quantilesState(0.5, 0.95, 0.99)(latency_ns / 1e6) AS latency_ms,
    quantilesState(0.5, 0.95, 0.99)(ttft_ns / 1e6) AS ttft_ms
FROM requests FINAL
GROUP BY hour, tenant_id, key_id, model, deployment, provider, status;
