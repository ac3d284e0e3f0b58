-- Spend per key (and tenant) since a time, from the hourly rollup (from the
-- start of the hour that holds the time), corrections by re-costing included:
-- what the budgets count.
-- params: since_ns UInt64 = 0, tenant_id String = ''
SELECT tenant_id, key_id, countMerge(requests) AS requests, toString(sumMerge(cost_pico_usd)) AS cost_pico_usd,
       sumMerge(prompt_tokens) + sumMerge(completion_tokens) AS tokens
FROM requests_hourly
WHERE hour >= toStartOfHour(fromUnixTimestamp64Nano(toInt64({since_ns:UInt64})))
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
GROUP BY tenant_id, key_id
ORDER BY tenant_id, key_id
