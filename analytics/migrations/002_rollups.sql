-- Per-minute rollup for dashboards. It counts rows as inserted: a batch the
-- sink re-inserts after a failed ack is counted twice here (the base tables
-- dedupe on merge and with FINAL; this view does not).
CREATE TABLE IF NOT EXISTS requests_per_minute (
    minute DateTime('UTC'),
    tenant_id LowCardinality(String),
    model LowCardinality(String),
    requests AggregateFunction(count),
    errors AggregateFunction(countIf, UInt8),
    prompt_tokens AggregateFunction(sum, UInt32),
    completion_tokens AggregateFunction(sum, UInt32),
    cost_pico_usd AggregateFunction(sum, UInt64),
    latency_ms AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64)
) ENGINE = AggregatingMergeTree
ORDER BY (minute, tenant_id, model);

CREATE MATERIALIZED VIEW IF NOT EXISTS requests_per_minute_mv TO requests_per_minute AS
SELECT
    toStartOfMinute(ts) AS minute,
    tenant_id,
    model,
    countState() AS requests,
    countIfState(status >= 400) AS errors,
    sumState(prompt_tokens) AS prompt_tokens,
    sumState(completion_tokens) AS completion_tokens,
    sumState(cost_pico_usd) AS cost_pico_usd,
    quantilesState(0.5, 0.95, 0.99)(latency_ns / 1e6) AS latency_ms
FROM requests
GROUP BY minute, tenant_id, model;
