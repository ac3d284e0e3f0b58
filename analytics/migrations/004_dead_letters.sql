-- Events the sink could not decode or store, with the reason, so that one bad
-- message never blocks the stream behind it (issue 7). ``payload`` is the
-- event as JSON when it decoded, else the raw message.
CREATE TABLE IF NOT EXISTS dead_letters (
    id String,
    ts DateTime64(9, 'UTC'),
    subject LowCardinality(String),
    request_id String,
    reason String,
    payload String
) ENGINE = ReplacingMergeTree
ORDER BY (ts, id);
