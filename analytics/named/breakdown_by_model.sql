-- Per model name: latency and the routing and cache stages' time, p50 and p99
-- (what a group's strategy or the cache costs, measured inside).
-- params: since_ns UInt64 = 0, until_ns UInt64 = 9223372036854775807
SELECT
    model,
    count() AS requests,
    countIf(cache_hit) AS cache_hits,
    round(quantile(0.5)(latency_ns) / 1e6, 3) AS latency_p50_ms,
    round(quantile(0.99)(latency_ns) / 1e6, 3) AS latency_p99_ms,
    round(quantile(0.5)(route_ns) / 1e3, 1) AS route_p50_us,
    round(quantile(0.99)(route_ns) / 1e3, 1) AS route_p99_us,
    round(quantile(0.5)(cache_ns) / 1e3, 1) AS cache_p50_us,
    round(quantile(0.99)(cache_ns) / 1e3, 1) AS cache_p99_us,
    round(quantile(0.5)(provider_ns) / 1e3, 1) AS provider_p50_us,
    round(quantile(0.5)(upstream_ttfb_ns) / 1e3, 1) AS upstream_p50_us
FROM requests FINAL
WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
  AND ts < fromUnixTimestamp64Nano(toInt64({until_ns:UInt64}))
GROUP BY model
ORDER BY model
