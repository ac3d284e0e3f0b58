-- The keys that cost most over the last N hours (whole hours), from the
-- hourly rollup.
-- params: hours UInt32 = 24, tenant_id String = '', limit UInt32 = 10
SELECT tenant_id, key_id, requests, tokens, toString(cost) AS cost_pico_usd
FROM (
    SELECT tenant_id, key_id, countMerge(requests) AS requests,
           sumMerge(prompt_tokens) + sumMerge(completion_tokens) AS tokens, sumMerge(cost_pico_usd) AS cost
    FROM requests_hourly
    WHERE hour >= toStartOfHour(now() - toIntervalHour({hours:UInt32}))
      AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
    GROUP BY tenant_id, key_id
)
ORDER BY cost DESC, tenant_id, key_id
LIMIT {limit:UInt32}
