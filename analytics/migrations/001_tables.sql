-- Raw events: every event as it arrived, for audit and replay.
CREATE TABLE IF NOT EXISTS events (
    event_id String,
    kind LowCardinality(String),
    request_id String,
    ts DateTime64(9, 'UTC'),
    stage LowCardinality(String),
    body String
) ENGINE = ReplacingMergeTree
ORDER BY (ts, event_id);

-- One wide row per finished request. Durations in ns, money in pico-USD
-- (1e-12 USD): integers, so sums are exact.
CREATE TABLE IF NOT EXISTS requests (
    request_id String,
    ts DateTime64(9, 'UTC'),
    origin LowCardinality(String),
    api LowCardinality(String),
    tenant_id LowCardinality(String),
    key_id LowCardinality(String),
    model LowCardinality(String),
    deployment LowCardinality(String),
    provider LowCardinality(String),
    stream Bool,
    status UInt16,
    error_type LowCardinality(String),
    error_code LowCardinality(String),
    prompt_tokens UInt32,
    completion_tokens UInt32,
    usage_source LowCardinality(String),
    cost_pico_usd UInt64,
    latency_ns UInt64,
    ttft_ns UInt64,
    ingress_ns UInt64,
    policy_ns UInt64,
    redact_ns UInt64,
    route_ns UInt64,
    provider_ns UInt64,
    bus_ns UInt64,
    upstream_ttfb_ns UInt64,
    upstream_stream_ns UInt64,
    client_disconnected Bool
) ENGINE = ReplacingMergeTree
ORDER BY (ts, request_id);

-- One row per upstream try.
CREATE TABLE IF NOT EXISTS attempts (
    event_id String,
    request_id String,
    ts DateTime64(9, 'UTC'),
    deployment LowCardinality(String),
    provider LowCardinality(String),
    upstream_model LowCardinality(String),
    status UInt16,
    stream Bool,
    error_code LowCardinality(String),
    ttfb_ns UInt64,
    duration_ns UInt64
) ENGINE = ReplacingMergeTree
ORDER BY (ts, event_id);
