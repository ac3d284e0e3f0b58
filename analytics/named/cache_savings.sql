-- Response-cache hits, hit rate and what they saved per model over the last
-- N hours, from the hourly rollup.
-- params: hours UInt32 = 24, tenant_id String = ''
SELECT model, requests, cache_hits, round(cache_hits / requests, 4) AS hit_rate, saved_pico_usd
FROM (
    SELECT
        model,
        countMerge(requests) AS requests,
        countIfMerge(cache_hits) AS cache_hits,
        toString(sumMerge(cost_saved_pico_usd)) AS saved_pico_usd
    FROM requests_hourly
    WHERE hour >= toStartOfHour(now() - toIntervalHour({hours:UInt32}))
      AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
    GROUP BY model
)
ORDER BY model
