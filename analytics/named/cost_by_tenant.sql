-- Spend per tenant over the last N hours (whole hours), from the hourly rollup.
-- params: hours UInt32 = 24, tenant_id String = ''
SELECT
    tenant_id,
    countMerge(requests) AS requests,
    sumMerge(prompt_tokens) + sumMerge(completion_tokens) AS tokens,
    toString(sumMerge(cost_pico_usd)) AS cost_pico_usd
FROM requests_hourly
WHERE hour >= toStartOfHour(now() - toIntervalHour({hours:UInt32}))
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
GROUP BY tenant_id
ORDER BY toUInt64(cost_pico_usd) DESC, tenant_id
