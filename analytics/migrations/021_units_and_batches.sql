-- Issue 28: a request priced by something other than tokens (images made,
-- ms of audio heard, characters spoken, rerank search units) says how many
-- and of what, and what that part cost; a batch's line names its batch.
-- Money stays integer pico-USD: cost_units_pico_usd is a part of
-- cost_pico_usd (the total, which every rollup already sums), never added
-- to it again, so the rollups stay exact and count units' cost as they are.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS units UInt64;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS unit LowCardinality(String);
ALTER TABLE requests ADD COLUMN IF NOT EXISTS cost_units_pico_usd UInt64;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS batch_id String;
-- The named query batches reads one batch's lines without every granule
-- (the table is ordered by time first); most rows have none.
ALTER TABLE requests ADD INDEX IF NOT EXISTS batch_id_idx batch_id TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE requests MATERIALIZE INDEX batch_id_idx;

-- The zero-cost alert counts successes that cost nothing although they
-- used something: units too now (an image whose price went missing), and
-- not moderations, which are free by design (their tokens are counted, at
-- the catalog's price of 0). The view is made again with that condition;
-- the table it fills, and what it holds, stay as they are.
DROP VIEW IF EXISTS requests_minutely_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS requests_minutely_mv TO requests_minutely AS
SELECT
    toStartOfMinute(ts) AS minute,
    tenant_id,
    key_id,
    model,
    deployment,
    countState() AS requests,
    countIfState(status >= 400) AS errors,
    sumState(toUInt64(prompt_tokens)) AS prompt_tokens,
    sumState(toUInt64(completion_tokens)) AS completion_tokens,
    sumState(cost_pico_usd) AS cost_pico_usd,
    countIfState(cache_hit) AS cache_hits,
    countIfState(status < 400 AND requests.cost_pico_usd = 0 AND NOT cache_hit AND requests.api != 'moderations'
                 AND (requests.prompt_tokens + requests.completion_tokens > 0 OR requests.units > 0))
        AS zero_cost_successes,
    quantilesState(0.5, 0.95, 0.99)(latency_ns / 1e6) AS latency_ms,
    quantilesIfState(0.5, 0.95, 0.99)(latency_ns / 1e6, status < 400) AS success_latency_ms,
    quantilesIfState(0.5, 0.95, 0.99)(ttft_ns / 1e6, status < 400) AS success_ttft_ms
FROM requests
GROUP BY minute, tenant_id, key_id, model, deployment;
