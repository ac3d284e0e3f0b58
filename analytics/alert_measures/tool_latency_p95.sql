-- p95 latency (ms) of successful MCP calls (an isError result counts: the
-- tool answered), per tool (server__tool) or per server, over the last N minutes.
-- params: minutes UInt32 = 5, by String = 'tool', min_requests UInt32 = 10
SELECT subject, '' AS tenant_id, p[2] AS value, calls AS volume,
       concat('p50 ', toString(round(p[1], 1)), ' ms, p95 ', toString(round(p[2], 1)), ' ms over ',
              toString(calls), ' calls') AS detail
FROM (
    SELECT if({by:String} = 'server', server, concat(server, '__', tool)) AS subject,
           count() AS calls, quantiles(0.5, 0.95)(latency_ns / 1e6) AS p
    FROM tool_calls FINAL
    WHERE ts >= now64(9) - toIntervalMinute({minutes:UInt32}) AND status < 400
    GROUP BY subject
)
WHERE calls >= {min_requests:UInt32}
