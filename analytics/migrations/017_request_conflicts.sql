-- Issue 24: a request's second row whose content differs from the one
-- stored (the ingress recorded a 504, then the provider's billed 200 came;
-- or the same request was processed twice). `requests` keeps the first, so
-- the rollups count the request once; both versions are kept here, as JSON
-- objects of the row, with the fields that differ. A conflict's id is a hash
-- of its new version: the same conflict redelivered replaces itself.
CREATE TABLE IF NOT EXISTS request_conflicts (
    request_id String,
    ts DateTime64(9, 'UTC'),
    conflict_id String,
    detected_at DateTime64(9, 'UTC'),
    tenant_id LowCardinality(String),
    differs Array(String),
    stored_row String,
    new_row String,
    INDEX request_id_idx request_id TYPE bloom_filter(0.01) GRANULARITY 4
) ENGINE = ReplacingMergeTree
ORDER BY (ts, request_id, conflict_id);
