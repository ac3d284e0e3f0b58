-- Control-plane changes, newest first; tenant "" means every tenant.
-- params: minutes UInt32 = 1440, tenant_id String = '', limit UInt32 = 1000
SELECT ts, actor, action, record_type, record_id, tenant_id, before, after
FROM audit FINAL
WHERE ts >= now64(9) - toIntervalMinute({minutes:UInt32})
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
ORDER BY ts DESC
LIMIT {limit:UInt32}
