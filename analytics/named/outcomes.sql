-- How requests ended in a window: per status and error code, with tokens and
-- cost.
-- params: since_ns UInt64 = 0, until_ns UInt64 = 9223372036854775807, tenant_id String = ''
SELECT status, error_code, count() AS requests, sum(prompt_tokens) AS prompt_tokens,
       sum(completion_tokens) AS completion_tokens, toString(sum(cost_pico_usd)) AS cost_pico_usd
FROM requests FINAL
WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
  AND ts < fromUnixTimestamp64Nano(toInt64({until_ns:UInt64}))
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
GROUP BY status, error_code
ORDER BY status, error_code
