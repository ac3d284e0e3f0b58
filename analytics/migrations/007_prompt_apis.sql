-- Issue 10: a request made by a prompt API names its prompt, version and
-- label, and the API call it is a step of (parent_id). The call itself is a
-- row in api_calls, with its requests' totals: spend is summed from
-- requests alone, so the parent never counts twice.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS prompt_name LowCardinality(String);
ALTER TABLE requests ADD COLUMN IF NOT EXISTS prompt_version UInt32;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS prompt_label LowCardinality(String);
ALTER TABLE requests ADD COLUMN IF NOT EXISTS parent_id String;
CREATE TABLE IF NOT EXISTS api_calls (
    request_id String,
    ts DateTime64(9, 'UTC'),
    slug LowCardinality(String),
    prompt_name LowCardinality(String),
    prompt_version UInt32,
    prompt_label LowCardinality(String),
    origin LowCardinality(String),
    tenant_id LowCardinality(String),
    key_id String,
    stream Bool,
    status UInt16,
    error_type LowCardinality(String),
    error_code LowCardinality(String),
    calls UInt8,
    schema_failures UInt8,
    prompt_tokens UInt32,
    completion_tokens UInt32,
    cost_pico_usd UInt64,
    latency_ns UInt64,
    ttft_ns UInt64
) ENGINE = ReplacingMergeTree
ORDER BY (ts, request_id);
