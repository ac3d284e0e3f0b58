-- Alert events (e.g. zero_cost) of the last N minutes, newest first.
-- params: minutes UInt32 = 60
SELECT request_id, ts, JSONExtractString(body, 'alert') AS alert,
       JSONExtractString(body, 'model') AS model, JSONExtractString(body, 'detail') AS detail,
       JSONExtractString(body, 'deployment') AS deployment
FROM events FINAL
WHERE kind = 'alert' AND ts >= now64(9) - toIntervalMinute({minutes:UInt32})
ORDER BY ts DESC
