-- Ids of the requests stored since a time (by when they were received), for
-- tools that watch rows land (the lag benchmark).
-- params: since_ns UInt64 = 0, limit UInt32 = 100000
SELECT DISTINCT request_id
FROM requests
WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
LIMIT {limit:UInt32}
