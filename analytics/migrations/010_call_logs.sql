-- Issue 11: call logs, for tenants that opt in. The bodies the upstream saw
-- (after redaction), each cut at the tenant's cap. Bodies are text that
-- repeats a lot (system prompts, JSON keys): ZSTD keeps them small. They get
-- their own retention (gateway.call_log_ttl_days), applied by the sink.
CREATE TABLE IF NOT EXISTS call_logs (
    request_id String,
    ts DateTime64(9, 'UTC'),
    tenant_id LowCardinality(String),
    key_id LowCardinality(String),
    model LowCardinality(String),
    status UInt16,
    request_body String CODEC(ZSTD(3)),
    response_body String CODEC(ZSTD(3)),
    request_bytes UInt32,
    response_bytes UInt32,
    INDEX request_id_idx request_id TYPE bloom_filter(0.01) GRANULARITY 4
) ENGINE = ReplacingMergeTree
ORDER BY (tenant_id, ts, request_id);

-- The request view reads one request's stage events by id.
ALTER TABLE events ADD INDEX IF NOT EXISTS request_id_idx request_id TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE events MATERIALIZE INDEX request_id_idx;
