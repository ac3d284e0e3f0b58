-- Issue 13: requests_per_minute (tenant, model) was filled from the same
-- inserts as requests_minutely (tenant, key, model, deployment), which holds
-- all it held: one materialized view less on every insert of requests. Its
-- minutes are in requests_minutely (backfilled by 012) for as long as raw
-- rows are kept, and its hours in requests_hourly beyond that.
DROP VIEW IF EXISTS requests_per_minute_mv;
DROP VIEW IF EXISTS cost_corrections_per_minute_mv;
DROP TABLE IF EXISTS requests_per_minute;
