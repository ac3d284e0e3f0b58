-- One request's stage visits in order: which stage held it, for how long,
-- and how it left (the request view). The visits ride on the request's own
-- event (its spans: every one but the last forwarded the request); requests
-- stored before that have one 'stage' event per visit instead.
-- params: request_id String = ''
SELECT stage, start_ns, duration_ns, outcome
FROM (
    SELECT s.1 AS stage, s.2 AS start_ns, s.3 - s.2 AS duration_ns,
           if(i < length(spans), 'forward', if(JSONExtractInt(body, 'status') < 400, 'reply', 'failure')) AS outcome
    FROM (
        SELECT body, JSONExtract(body, 'spans', 'Array(Tuple(String, Int64, Int64))') AS spans
        FROM events FINAL
        WHERE request_id = {request_id:String} AND kind = 'request'
    )
    ARRAY JOIN spans AS s, arrayEnumerate(spans) AS i
    UNION ALL
    SELECT stage, toUnixTimestamp64Nano(ts) AS start_ns, toInt64(JSONExtractUInt(body, 'duration_ns')) AS duration_ns,
           JSONExtractString(body, 'outcome') AS outcome
    FROM events FINAL
    WHERE request_id = {request_id:String} AND kind = 'stage'
)
ORDER BY start_ns
