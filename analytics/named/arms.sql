-- A/B arms side by side: requests, errors, cost and latency per arm of each
-- split group since a time; model_group "" means every group.
-- params: since_ns UInt64 = 0, model_group String = ''
SELECT model_group, arm, count() AS requests, countIf(status != 200) AS errors,
       -- not "AS cost_pico_usd": ClickHouse would read that alias in the average below
       toString(sum(cost_pico_usd)) AS total_cost_pico_usd,
       toString(intDiv(sum(cost_pico_usd), count())) AS avg_cost_pico_usd,
       round(quantile(0.5)(latency_ns) / 1e6, 1) AS p50_latency_ms,
       round(quantile(0.99)(latency_ns) / 1e6, 1) AS p99_latency_ms
FROM requests FINAL
WHERE arm != '' AND ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
  AND ({model_group:String} = '' OR model_group = {model_group:String})
GROUP BY model_group, arm
ORDER BY model_group, arm
