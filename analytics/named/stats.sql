-- Per model over the last N minutes (whole minutes), from the per-minute
-- rollup: requests, errors, tokens, cost, latency and time-to-first-token
-- quantiles (``sluice stats``).
-- params: minutes UInt32 = 60, tenant_id String = ''
SELECT
    model,
    countMerge(requests) AS requests,
    countIfMerge(errors) AS errors,
    sumMerge(prompt_tokens) AS prompt_tokens,
    sumMerge(completion_tokens) AS completion_tokens,
    toString(sumMerge(cost_pico_usd)) AS cost_pico_usd,
    arrayMap(x -> round(x, 2), quantilesMerge(0.5, 0.95, 0.99)(latency_ms)) AS latency_ms,
    arrayMap(x -> round(x, 2), quantilesIfMerge(0.5, 0.95, 0.99)(success_ttft_ms)) AS ttft_ms
FROM requests_minutely
WHERE minute >= toStartOfMinute(now() - toIntervalMinute({minutes:UInt32}))
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
GROUP BY model
ORDER BY requests DESC, model
