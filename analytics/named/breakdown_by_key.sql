-- Median time per part for each key: what one key's settings (limits,
-- redaction) cost, measured inside the gateway rather than by a client.
-- params: since_ns UInt64 = 0, until_ns UInt64 = 9223372036854775807
SELECT
    key_id,
    count() AS requests,
    round(quantile(0.5)(latency_ns) / 1e6, 3) AS latency_ms,
    round(quantile(0.5)(policy_ns) / 1e3, 1) AS policy_us,
    round(quantile(0.5)(route_ns) / 1e3, 1) AS route_us,
    round(quantile(0.5)(provider_ns) / 1e3, 1) AS provider_us,
    round(quantile(0.5)(ingress_ns) / 1e3, 1) AS ingress_us,
    round(quantile(0.5)(bus_ns) / 1e3, 1) AS bus_us
FROM requests FINAL
WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
  AND ts < fromUnixTimestamp64Nano(toInt64({until_ns:UInt64}))
GROUP BY key_id
ORDER BY key_id
