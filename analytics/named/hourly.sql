-- Per hour and model since a time, from the hourly rollup: requests, errors,
-- tokens, cost, cache hits and latency/TTFT quantiles; tenant "" means every
-- tenant, key_ids (ids joined by ",") "" every key of it (the portal narrows
-- a developer's view to the keys of their apps here, in the query).
-- params: since_ns UInt64 = 0, tenant_id String = '', key_ids String = ''
SELECT
    hour,
    model,
    countMerge(requests) AS requests,
    countMergeIf(requests_hourly.requests, status >= 400) AS errors,
    sumMerge(prompt_tokens) AS prompt_tokens,
    sumMerge(completion_tokens) AS completion_tokens,
    toString(sumMerge(cost_pico_usd)) AS cost_pico_usd,
    countIfMerge(cache_hits) AS cache_hits,
    arrayMap(x -> round(x, 2), quantilesMerge(0.5, 0.95, 0.99)(latency_ms)) AS latency_ms,
    arrayMap(x -> round(x, 2), quantilesMerge(0.5, 0.95, 0.99)(ttft_ms)) AS ttft_ms
FROM requests_hourly
WHERE hour >= toStartOfHour(fromUnixTimestamp64Nano(toInt64({since_ns:UInt64})))
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
  AND ({key_ids:String} = '' OR has(splitByChar(',', {key_ids:String}), key_id))
GROUP BY hour, model
ORDER BY hour, model
