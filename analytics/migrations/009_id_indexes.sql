-- Issue 11: one request's rows (the request view, `sluice stats request`,
-- a prompt call's children) found by id without reading every granule:
-- the tables are ordered by time first.
ALTER TABLE requests ADD INDEX IF NOT EXISTS request_id_idx request_id TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE requests ADD INDEX IF NOT EXISTS parent_id_idx parent_id TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE attempts ADD INDEX IF NOT EXISTS request_id_idx request_id TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE api_calls ADD INDEX IF NOT EXISTS request_id_idx request_id TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE requests MATERIALIZE INDEX request_id_idx;
ALTER TABLE requests MATERIALIZE INDEX parent_id_idx;
ALTER TABLE attempts MATERIALIZE INDEX request_id_idx;
ALTER TABLE api_calls MATERIALIZE INDEX request_id_idx;
