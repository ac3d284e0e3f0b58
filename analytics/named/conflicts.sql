-- Requests that came with a second, different row (issue 24), newest
-- detection first: the version stored in requests (the one counted), the one
-- that came later, and the fields that differ.
-- params: hours UInt32 = 24, request_id String = '', tenant_id String = ''
SELECT request_id, ts, detected_at, tenant_id, differs, stored_row, new_row
FROM request_conflicts FINAL
WHERE detected_at >= now64(9) - toIntervalHour({hours:UInt32})
  AND ({request_id:String} = '' OR request_id = {request_id:String})
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
ORDER BY detected_at DESC, request_id
LIMIT 1000
