-- Latency and time-to-first-token p50/p95/p99 (ms) of successful requests per
-- model and deployment over the last N hours, from the hourly rollup.
-- params: hours UInt32 = 24, tenant_id String = ''
SELECT
    model,
    deployment,
    countMerge(requests) AS requests,
    arrayMap(x -> round(x, 2), quantilesMerge(0.5, 0.95, 0.99)(latency_ms)) AS latency_ms,
    arrayMap(x -> round(x, 2), quantilesMerge(0.5, 0.95, 0.99)(ttft_ms)) AS ttft_ms
FROM requests_hourly
WHERE hour >= toStartOfHour(now() - toIntervalHour({hours:UInt32}))
  AND status < 400
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
GROUP BY model, deployment
ORDER BY model, deployment
