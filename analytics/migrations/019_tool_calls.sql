-- Issue 26: every MCP call (a request of api "mcp") is a row of tool_calls.
-- Its request row carries what it needs (server, upstream tool name or
-- resource URI, method, argument and result sizes, isError); the rows get
-- here by a materialized view of requests, so they are exactly once as the
-- requests rows are: the sink inserts into requests only a request's first
-- row (a copy is dropped, a differing one kept in request_conflicts), and
-- a view sees only what is inserted.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS mcp_server LowCardinality(String);
ALTER TABLE requests ADD COLUMN IF NOT EXISTS mcp_tool String;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS mcp_method LowCardinality(String);
ALTER TABLE requests ADD COLUMN IF NOT EXISTS request_bytes UInt64;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS response_bytes UInt64;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS tool_error Bool;

-- tool: the upstream's own name (a resource's URI for resources/read), not
-- the namespaced one callers see (that is requests.model). Detections are
-- counted from the detections table by the named queries: they come in
-- their own events, after the request row may already be stored.
CREATE TABLE IF NOT EXISTS tool_calls (
    request_id String,
    ts DateTime64(9, 'UTC'),
    origin LowCardinality(String),
    tenant_id LowCardinality(String),
    key_id LowCardinality(String),
    server LowCardinality(String),
    tool String,
    method LowCardinality(String),
    instance LowCardinality(String),
    attempts UInt8,
    status UInt16,
    error_type LowCardinality(String),
    error_code LowCardinality(String),
    tool_error Bool,
    latency_ns UInt64,
    cost_pico_usd UInt64,
    request_bytes UInt64,
    response_bytes UInt64,
    trace_id String,
    INDEX request_id_idx request_id TYPE bloom_filter(0.01) GRANULARITY 4
) ENGINE = ReplacingMergeTree
ORDER BY (ts, request_id);

-- A call the ingress ended itself (refused before the bus, a client gone)
-- may come without the MCP fields: its server and tool are then read from
-- the namespaced name ("server__tool", the server's name has no "_").
CREATE MATERIALIZED VIEW IF NOT EXISTS tool_calls_mv TO tool_calls AS
SELECT
    request_id,
    ts,
    origin,
    tenant_id,
    key_id,
    if(mcp_server != '', mcp_server,
       if(position(model, '__') > 0, substring(model, 1, position(model, '__') - 1), '')) AS server,
    if(mcp_server != '', mcp_tool,
       if(position(model, '__') > 0, substring(model, position(model, '__') + 2), model)) AS tool,
    mcp_method AS method,
    deployment AS instance,
    attempts,
    status,
    error_type,
    error_code,
    tool_error,
    latency_ns,
    cost_pico_usd,
    request_bytes,
    response_bytes,
    trace_id
FROM requests
WHERE api = 'mcp';
