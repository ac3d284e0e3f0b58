-- Share of requests that failed per model or deployment over the last N minutes.
-- params: minutes UInt32 = 5, by String = 'model', min_requests UInt32 = 10
SELECT subject, '' AS tenant_id, errors / requests AS value, requests AS volume,
       concat(toString(errors), ' of ', toString(requests), ' requests failed') AS detail
FROM (
    SELECT if({by:String} = 'deployment', deployment, model) AS subject,
           countMerge(requests) AS requests, countIfMerge(errors) AS errors
    FROM requests_minutely
    WHERE minute >= toStartOfMinute(now() - toIntervalMinute({minutes:UInt32}))
    GROUP BY subject
)
WHERE requests >= {min_requests:UInt32}
