-- Every change to a control-plane record (issue 8): who made it, what it was
-- before and after (JSON, secrets removed). Kept for ever: it is the trail.
CREATE TABLE IF NOT EXISTS audit (
    event_id String,
    ts DateTime64(9, 'UTC'),
    actor String,
    action LowCardinality(String),
    record_type LowCardinality(String),
    record_id String,
    tenant_id String,
    before String,
    after String
) ENGINE = ReplacingMergeTree
ORDER BY (ts, event_id);
