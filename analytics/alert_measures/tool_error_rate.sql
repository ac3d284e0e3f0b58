-- Share of MCP calls that failed (400 or above) or whose tool answered
-- isError, per tool (server__tool) or per server, over the last N minutes.
-- params: minutes UInt32 = 5, by String = 'tool', min_requests UInt32 = 10
SELECT subject, '' AS tenant_id, errors / calls AS value, calls AS volume,
       concat(toString(errors), ' of ', toString(calls), ' calls failed (', toString(tool_errors),
              ' isError)') AS detail
FROM (
    SELECT if({by:String} = 'server', server, concat(server, '__', tool)) AS subject,
           count() AS calls, countIf(status >= 400 OR tool_error) AS errors, countIf(tool_error) AS tool_errors
    FROM tool_calls FINAL
    WHERE ts >= now64(9) - toIntervalMinute({minutes:UInt32})
    GROUP BY subject
)
WHERE calls >= {min_requests:UInt32}
