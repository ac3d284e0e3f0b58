-- Error rate per MCP tool over the last N hours: a call failed (400 or
-- above: refused, timed out, the server unreachable) or the tool answered
-- isError; the commonest failure code. Tools that never failed are left out.
-- params: hours UInt32 = 24, tenant_id String = ''
SELECT server, tool, calls, failed, tool_errors, round((failed + tool_errors) / calls, 4) AS error_rate, top_error_code
FROM (
    SELECT
        server,
        tool,
        count() AS calls,
        countIf(status >= 400) AS failed,
        countIf(tool_error) AS tool_errors,
        if(failed > 0, topKIf(1)(error_code, status >= 400)[1], '') AS top_error_code
    FROM tool_calls FINAL
    WHERE ts >= now64(9) - toIntervalHour({hours:UInt32})
      AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
    GROUP BY server, tool
)
WHERE failed + tool_errors > 0
ORDER BY error_rate DESC, calls DESC, server, tool
