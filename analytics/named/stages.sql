-- One request's stage visits in order: which stage held it, for how long,
-- and how it left (the request view).
-- params: request_id String = ''
SELECT stage, toUnixTimestamp64Nano(ts) AS start_ns, JSONExtractUInt(body, 'duration_ns') AS duration_ns,
       JSONExtractString(body, 'outcome') AS outcome
FROM events FINAL
WHERE request_id = {request_id:String} AND kind = 'stage'
ORDER BY ts
