-- Medians of where the time went, per streamed or not, over a window.
-- params: since_ns UInt64 = 0, until_ns UInt64 = 9223372036854775807
SELECT
    stream,
    count() AS requests,
    round(quantile(0.5)(latency_ns) / 1e6, 3) AS latency_ms,
    round(quantile(0.5)(ttft_ns) / 1e6, 3) AS ttft_ms,
    round(quantile(0.5)(ingress_ns) / 1e6, 3) AS ingress_ms,
    round(quantile(0.5)(policy_ns) / 1e6, 3) AS policy_ms,
    round(quantile(0.5)(route_ns) / 1e6, 3) AS route_ms,
    round(quantile(0.5)(provider_ns) / 1e6, 3) AS provider_ms,
    round(quantile(0.5)(bus_ns) / 1e6, 3) AS bus_ms,
    round(quantile(0.5)(upstream_ttfb_ns) / 1e6, 3) AS upstream_ttfb_ms,
    round(quantile(0.5)(upstream_stream_ns) / 1e6, 3) AS upstream_stream_ms
FROM requests FINAL
WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
  AND ts < fromUnixTimestamp64Nano(toInt64({until_ns:UInt64}))
GROUP BY stream
ORDER BY stream
