-- Spend per key (or per tenant) since a time: what the budgets count, as
-- recorded.
-- params: since_ns UInt64 = 0, tenant_id String = ''
SELECT tenant_id, key_id, count() AS requests, toString(sum(cost_pico_usd)) AS cost_pico_usd,
       sum(prompt_tokens + completion_tokens) AS tokens
FROM requests FINAL
WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
GROUP BY tenant_id, key_id
ORDER BY tenant_id, key_id
