-- The newest MCP calls (tools, prompts, resources) of the last N minutes,
-- each with its privacy detections (arguments and result). Every filter is
-- optional ('' matches all): tool is the upstream's name or the namespaced
-- one (server__tool); status is a code such as 429, or the word error (400
-- or above, or a tool that answered isError).
-- params: minutes UInt32 = 60, tenant_id String = '', key_id String = '', server String = '', tool String = '', method String = '', status String = '', limit UInt32 = 50
WITH calls AS (
    SELECT *
    FROM tool_calls FINAL
    WHERE ts >= now64(9) - toIntervalMinute({minutes:UInt32})
      AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
      AND ({key_id:String} = '' OR key_id = {key_id:String})
      AND ({server:String} = '' OR server = {server:String})
      AND ({tool:String} = '' OR tool = {tool:String} OR concat(server, '__', tool) = {tool:String})
      AND ({method:String} = '' OR method = {method:String})
      AND ({status:String} = '' OR toString(status) = {status:String}
           OR ({status:String} = 'error' AND (status >= 400 OR tool_error)))
    ORDER BY ts DESC, request_id
    LIMIT {limit:UInt32}
)
SELECT c.request_id AS request_id, toUnixTimestamp64Milli(c.ts) AS ts_ms, c.tenant_id AS tenant_id,
       c.key_id AS key_id, c.server AS server, c.tool AS tool, c.method AS method, c.status AS status,
       c.error_type AS error_type, c.error_code AS error_code, c.tool_error AS tool_error,
       round(c.latency_ns / 1e6, 2) AS latency_ms, toString(c.cost_pico_usd) AS cost_pico_usd,
       c.request_bytes AS request_bytes, c.response_bytes AS response_bytes, d.found AS detections,
       c.trace_id AS trace_id
FROM calls AS c
LEFT JOIN (
    SELECT request_id, count() AS found
    FROM detections FINAL
    WHERE ts >= now64(9) - toIntervalMinute({minutes:UInt32}) AND request_id IN (SELECT request_id FROM calls)
    GROUP BY request_id
) AS d ON c.request_id = d.request_id
ORDER BY c.ts DESC, c.request_id
