-- Successful requests that used tokens but cost nothing, per model or deployment, over the last N minutes.
-- params: minutes UInt32 = 5, by String = 'model', min_requests UInt32 = 1
SELECT subject, '' AS tenant_id, toFloat64(zero) AS value, zero AS volume,
       concat(toString(zero), ' successful requests cost 0') AS detail
FROM (
    SELECT if({by:String} = 'deployment', deployment, model) AS subject,
           countIfMerge(zero_cost_successes) AS zero
    FROM requests_minutely
    WHERE minute >= toStartOfMinute(now() - toIntervalMinute({minutes:UInt32}))
    GROUP BY subject
)
WHERE zero >= {min_requests:UInt32}
