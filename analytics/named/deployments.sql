-- Each deployment's recent tries: how many, how many failed, and how fast its
-- successes began (``sluice routes``).
-- params: minutes UInt32 = 15
SELECT deployment, count() AS tries, countIf(status != 200) AS failed,
       round(quantileIf(0.5)(ttfb_ns, status = 200) / 1e6, 1) AS p50_ttfb_ms,
       round(quantileIf(0.99)(ttfb_ns, status = 200) / 1e6, 1) AS p99_ttfb_ms
FROM attempts FINAL
WHERE ts >= now64(9) - toIntervalMinute({minutes:UInt32})
GROUP BY deployment
ORDER BY deployment
