-- Successful requests that used tokens but cost nothing (a price missing, a
-- usage lost), per model and deployment over the last N hours, from the
-- per-minute rollup.
-- params: hours UInt32 = 24, tenant_id String = ''
SELECT model, deployment, zero_cost, requests
FROM (
    SELECT model, deployment, countIfMerge(zero_cost_successes) AS zero_cost, countMerge(requests) AS requests
    FROM requests_minutely
    WHERE minute >= toStartOfMinute(now() - toIntervalHour({hours:UInt32}))
      AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
    GROUP BY model, deployment
)
WHERE zero_cost > 0
ORDER BY zero_cost DESC, model, deployment
