-- The newest requests of the last N minutes (the dashboard's list, each
-- opening its request view).
-- params: minutes UInt32 = 60, tenant_id String = '', limit UInt32 = 20
SELECT request_id, toUnixTimestamp64Milli(ts) AS ts_ms, tenant_id, key_id, api, model, status, error_code,
       prompt_tokens + completion_tokens AS tokens, toString(cost_pico_usd) AS cost_pico_usd,
       round(latency_ns / 1e6, 2) AS latency_ms
FROM requests FINAL
WHERE ts >= now64(9) - toIntervalMinute({minutes:UInt32})
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
ORDER BY ts DESC
LIMIT {limit:UInt32}
