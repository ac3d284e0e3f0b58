-- Rows beyond one per request among the requests received since a time, in
-- the raw table (no FINAL: a merge would hide them), and the conflicts
-- recorded for them: the reliability table's "duplicate rows".
-- params: since_ns UInt64 = 0
SELECT
    (SELECT count() - uniqExact(request_id) FROM requests
     WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))) AS duplicate_rows,
    (SELECT count() FROM request_conflicts FINAL
     WHERE ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))) AS conflicts
