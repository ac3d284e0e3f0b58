-- Issue 12: each privacy detection (request, detector, action, where, rule
-- version), for audit. The value found is never stored.
CREATE TABLE IF NOT EXISTS detections (
    event_id String,
    request_id String,
    ts DateTime64(9, 'UTC'),
    tenant_id LowCardinality(String),
    detector LowCardinality(String),
    action LowCardinality(String),
    location String,
    start UInt32,
    end UInt32,
    rules_version UInt32,
    INDEX request_id_idx request_id TYPE bloom_filter(0.01) GRANULARITY 4
) ENGINE = ReplacingMergeTree
ORDER BY (ts, event_id);
