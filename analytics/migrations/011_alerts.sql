-- Issue 11: alert rules. Each firing and each resolution of an alert is one
-- row, written by the process that evaluates the rules; an alert's id names
-- the rule, what it is about and when it fired, so its two rows pair up.
CREATE TABLE IF NOT EXISTS alert_events (
    alert_id String,
    ts DateTime64(9, 'UTC'),
    state LowCardinality(String),
    rule LowCardinality(String),
    kind LowCardinality(String),
    subject String,
    tenant_id LowCardinality(String),
    value Float64,
    threshold Float64,
    detail String
) ENGINE = ReplacingMergeTree
ORDER BY (ts, alert_id, state);
