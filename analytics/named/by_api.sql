-- Per client API (chat, messages, responses, embeddings) over the last N
-- hours: requests, errors, tokens, cost and latency quantiles, from the raw rows.
-- params: hours UInt32 = 24, tenant_id String = ''
SELECT
    api,
    count() AS requests,
    countIf(status >= 400) AS errors,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    toString(sum(cost_pico_usd)) AS cost_pico_usd,
    arrayMap(x -> round(x / 1e6, 2), quantiles(0.5, 0.95, 0.99)(latency_ns)) AS latency_ms
FROM requests FINAL
WHERE ts >= now64(9) - toIntervalHour({hours:UInt32})
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
GROUP BY api
ORDER BY requests DESC, api
