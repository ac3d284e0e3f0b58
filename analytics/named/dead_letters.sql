-- What the sink could not store, newest first (the stream kept draining past
-- them).
-- params: minutes UInt32 = 60
SELECT ts, subject, request_id, reason, payload
FROM dead_letters FINAL
WHERE ts >= now64(9) - toIntervalMinute({minutes:UInt32})
ORDER BY ts DESC
