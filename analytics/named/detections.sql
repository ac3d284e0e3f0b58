-- Privacy detections of one request, or of a tenant over the last N minutes:
-- which detector, what was done and where (never the value).
-- params: request_id String = '', tenant_id String = '', minutes UInt32 = 60
SELECT request_id, ts, tenant_id, detector, action, location, start, end, rules_version
FROM detections FINAL
WHERE ts >= now64(9) - toIntervalMinute({minutes:UInt32})
  AND ({request_id:String} = '' OR request_id = {request_id:String})
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
ORDER BY ts, location, start
LIMIT 10000
