-- Issue 11: re-costing. `sluice analytics recost` writes one row per request
-- whose cost changes under the current catalog; the `requests` row stays as
-- recorded, so the original is always there to audit. A request's cost is
-- its latest correction's new cost, else its recorded one.
CREATE TABLE IF NOT EXISTS cost_corrections (
    request_id String,
    ts DateTime64(9, 'UTC'),
    corrected_at DateTime64(9, 'UTC'),
    recost_id String,
    tenant_id LowCardinality(String),
    key_id LowCardinality(String),
    model LowCardinality(String),
    deployment LowCardinality(String),
    provider LowCardinality(String),
    status UInt16,
    old_cost_pico_usd UInt64,
    new_cost_pico_usd UInt64,
    INDEX request_id_idx request_id TYPE bloom_filter(0.01) GRANULARITY 4
) ENGINE = ReplacingMergeTree
ORDER BY (ts, request_id, recost_id);

-- Each correction moves the rollups' cost by its difference and nothing
-- else (no request is counted again: the count states are empty). A cost
-- that goes down is added as its two's complement: UInt64 sums wrap, so the
-- total comes out exact.
CREATE MATERIALIZED VIEW IF NOT EXISTS cost_corrections_hourly_mv TO requests_hourly AS
SELECT
    toStartOfHour(ts) AS hour, tenant_id, key_id, model, deployment, provider, status,
    countStateIf(0) AS requests,
    sumStateIf(toUInt64(0), 0) AS prompt_tokens,
    sumStateIf(toUInt64(0), 0) AS completion_tokens,
    sumState(toUInt64(toInt64(new_cost_pico_usd) - toInt64(old_cost_pico_usd))) AS cost_pico_usd,
    countIfState(toUInt8(0)) AS cache_hits,
    sumStateIf(toUInt64(0), 0) AS cost_saved_pico_usd,
    quantilesStateIf(0.5, 0.95, 0.99)(toFloat64(0), 0) AS latency_ms,
    quantilesStateIf(0.5, 0.95, 0.99)(toFloat64(0), 0) AS ttft_ms
FROM cost_corrections
GROUP BY hour, tenant_id, key_id, model, deployment, provider, status;

CREATE MATERIALIZED VIEW IF NOT EXISTS cost_corrections_minutely_mv TO requests_minutely AS
SELECT
    toStartOfMinute(ts) AS minute, tenant_id, key_id, model, deployment,
    countStateIf(0) AS requests,
    countIfState(toUInt8(0)) AS errors,
    sumStateIf(toUInt64(0), 0) AS prompt_tokens,
    sumStateIf(toUInt64(0), 0) AS completion_tokens,
    sumState(toUInt64(toInt64(new_cost_pico_usd) - toInt64(old_cost_pico_usd))) AS cost_pico_usd,
    countIfState(toUInt8(0)) AS cache_hits,
    countIfState(toUInt8(0)) AS zero_cost_successes,
    quantilesStateIf(0.5, 0.95, 0.99)(toFloat64(0), 0) AS latency_ms,
    quantilesIfStateIf(0.5, 0.95, 0.99)(toFloat64(0), toUInt8(0), 0) AS success_latency_ms,
    quantilesIfStateIf(0.5, 0.95, 0.99)(toFloat64(0), toUInt8(0), 0) AS success_ttft_ms
FROM cost_corrections
GROUP BY minute, tenant_id, key_id, model, deployment;

CREATE MATERIALIZED VIEW IF NOT EXISTS cost_corrections_per_minute_mv TO requests_per_minute AS
SELECT
    toStartOfMinute(ts) AS minute, tenant_id, model,
    countStateIf(0) AS requests,
    countIfState(toUInt8(0)) AS errors,
    sumStateIf(toUInt32(0), 0) AS prompt_tokens,
    sumStateIf(toUInt32(0), 0) AS completion_tokens,
    sumState(toUInt64(toInt64(new_cost_pico_usd) - toInt64(old_cost_pico_usd))) AS cost_pico_usd,
    quantilesStateIf(0.5, 0.95, 0.99)(toFloat64(0), 0) AS latency_ms
FROM cost_corrections
GROUP BY minute, tenant_id, model;
