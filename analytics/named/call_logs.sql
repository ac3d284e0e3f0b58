-- Call logs (bodies of opted-in tenants' calls, after redaction), newest
-- first, each body's first `chars` characters. Every filter is optional: ''
-- (or 0) matches all; status is a code such as 429, or the word error (400 or above).
-- params: tenant_id String = '', key_id String = '', model String = '', status String = '', request_id String = '', since_ns UInt64 = 0, until_ns UInt64 = 0, limit UInt32 = 50, chars UInt32 = 300
SELECT
    toUnixTimestamp64Nano(ts) AS ts_ns,
    request_id,
    tenant_id,
    key_id,
    model,
    status,
    request_bytes,
    response_bytes,
    substringUTF8(request_body, 1, {chars:UInt32}) AS request_body,
    substringUTF8(response_body, 1, {chars:UInt32}) AS response_body
FROM call_logs FINAL
WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
  AND ({until_ns:UInt64} = 0 OR ts < fromUnixTimestamp64Nano(toInt64({until_ns:UInt64})))
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
  AND ({key_id:String} = '' OR key_id = {key_id:String})
  AND ({model:String} = '' OR model = {model:String})
  AND ({request_id:String} = '' OR request_id = {request_id:String})
  AND ({status:String} = '' OR toString(status) = {status:String} OR ({status:String} = 'error' AND status >= 400))
ORDER BY ts DESC, request_id
LIMIT {limit:UInt32}
