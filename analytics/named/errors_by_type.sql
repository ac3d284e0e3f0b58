-- Error rates by type and code over the last N minutes: each error's share of
-- all requests (from the raw rows: the rollups keep status, not the type).
-- params: minutes UInt32 = 60, tenant_id String = ''
SELECT error_type, error_code, errors, round(errors / total, 4) AS rate
FROM (
    SELECT error_type, error_code, count() AS errors,
           (SELECT count() FROM requests FINAL
            WHERE ts >= now64(9) - toIntervalMinute({minutes:UInt32})
              AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})) AS total
    FROM requests FINAL
    WHERE ts >= now64(9) - toIntervalMinute({minutes:UInt32}) AND status >= 400
      AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
    GROUP BY error_type, error_code
)
ORDER BY errors DESC, error_type, error_code
