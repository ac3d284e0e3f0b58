-- Requests and errors per minute over the last N minutes, from the
-- per-minute rollup (the dashboard's live chart); tenant "" means every tenant.
-- params: minutes UInt32 = 60, tenant_id String = ''
SELECT
    toUnixTimestamp(minute) AS minute,
    countMerge(requests) AS requests,
    countIfMerge(errors) AS errors,
    toString(sumMerge(cost_pico_usd)) AS cost_pico_usd
FROM requests_minutely
WHERE minute >= toStartOfMinute(now() - toIntervalMinute({minutes:UInt32}))
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
GROUP BY minute
ORDER BY minute
