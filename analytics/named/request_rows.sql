-- The rows of the requests received since a time, one per request: what a
-- reliability run checks against what each of its clients saw, in one
-- query rather than one per request.
-- params: since_ns UInt64 = 0, limit UInt32 = 100000
SELECT request_id, status, error_code, prompt_tokens, completion_tokens, toString(cost_pico_usd) AS cost_pico_usd
FROM requests FINAL
WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
LIMIT {limit:UInt32}
