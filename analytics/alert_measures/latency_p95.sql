-- p95 latency (ms) of successful requests per model or deployment over the last N minutes.
-- params: minutes UInt32 = 5, by String = 'model', min_requests UInt32 = 10
SELECT subject, '' AS tenant_id, p[2] AS value, requests AS volume,
       concat('p50 ', toString(round(p[1], 1)), ' ms, p95 ', toString(round(p[2], 1)), ' ms over ',
              toString(requests), ' requests') AS detail
FROM (
    SELECT if({by:String} = 'deployment', deployment, model) AS subject,
           countMerge(requests) - countIfMerge(errors) AS requests,
           quantilesIfMerge(0.5, 0.95, 0.99)(success_latency_ms) AS p
    FROM requests_minutely
    WHERE minute >= toStartOfMinute(now() - toIntervalMinute({minutes:UInt32}))
    GROUP BY subject
)
WHERE requests >= {min_requests:UInt32}
