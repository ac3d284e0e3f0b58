-- Per model over the last N minutes: requests, errors, tokens, cost, latency
-- and time-to-first-token quantiles (``sluice stats``).
-- params: minutes UInt32 = 60
SELECT
    model,
    count() AS requests,
    countIf(status >= 400) AS errors,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    toString(sum(cost_pico_usd)) AS cost_pico_usd,
    arrayMap(x -> round(x, 2), quantiles(0.5, 0.95, 0.99)(latency_ns / 1e6)) AS latency_ms,
    arrayMap(x -> round(x, 2), quantilesIf(0.5, 0.95, 0.99)(ttft_ns / 1e6, status < 400)) AS ttft_ms
FROM requests FINAL
WHERE ts >= now64(9) - toIntervalMinute({minutes:UInt32})
GROUP BY model
ORDER BY requests DESC, model
