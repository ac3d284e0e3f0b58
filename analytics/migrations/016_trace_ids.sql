-- Issue 14: the caller's W3C trace id (from a valid traceparent) on each
-- request's row, found by a bloom filter like the other ids.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS trace_id String;
ALTER TABLE requests ADD INDEX IF NOT EXISTS trace_id_idx trace_id TYPE bloom_filter(0.01) GRANULARITY 4;
