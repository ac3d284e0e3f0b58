-- Issue 9: which model group served a request (after aliases), its A/B arm,
-- how many upstream tries it took, and whether the response cache answered
-- it (with the cost that saved at catalog prices; the hit itself costs 0).
-- Each attempt row gets its number within the request and the error's text.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS model_group LowCardinality(String) AFTER model;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS arm LowCardinality(String) AFTER provider;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS attempts UInt8 AFTER arm;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS cache_hit Bool AFTER client_disconnected;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS cost_saved_pico_usd UInt64 AFTER cache_hit;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS cache_ns UInt64 AFTER route_ns;
ALTER TABLE attempts ADD COLUMN IF NOT EXISTS number UInt8 AFTER request_id;
ALTER TABLE attempts ADD COLUMN IF NOT EXISTS error_message String AFTER error_code;
