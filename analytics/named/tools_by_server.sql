-- MCP calls per server and tool over the last N hours: calls, failed calls
-- (400 or above), tool errors (isError results, a 200), latency p50/p95
-- (ms, of every call), cost, and the bytes of arguments and results.
-- params: hours UInt32 = 24, tenant_id String = ''
SELECT
    server,
    tool,
    count() AS calls,
    countIf(status >= 400) AS errors,
    countIf(tool_error) AS tool_errors,
    arrayMap(x -> round(x / 1e6, 2), quantiles(0.5, 0.95)(latency_ns)) AS latency_ms,
    toString(sum(cost_pico_usd)) AS cost_pico_usd,
    sum(request_bytes) AS request_bytes,
    sum(response_bytes) AS response_bytes
FROM tool_calls FINAL
WHERE ts >= now64(9) - toIntervalHour({hours:UInt32})
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
GROUP BY server, tool
ORDER BY calls DESC, server, tool
