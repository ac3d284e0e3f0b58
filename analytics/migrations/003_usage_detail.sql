-- Issue 3: cached, cache-write and reasoning tokens, and cost split by what
-- was billed (uncached input incl. cache writes, cached input, output).
-- cost_pico_usd stays the total. IF NOT EXISTS makes a re-run harmless.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS cached_tokens UInt32 AFTER completion_tokens;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS cache_write_tokens UInt32 AFTER cached_tokens;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS reasoning_tokens UInt32 AFTER cache_write_tokens;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS cost_input_pico_usd UInt64 AFTER cost_pico_usd;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS cost_cached_input_pico_usd UInt64 AFTER cost_input_pico_usd;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS cost_output_pico_usd UInt64 AFTER cost_cached_input_pico_usd;
