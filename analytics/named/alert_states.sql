-- Alerts of the last N hours from the alert rules, newest first: firing
-- (not resolved yet) or resolved, with what they measured.
-- params: hours UInt32 = 24, tenant_id String = ''
SELECT
    alert_id,
    rule,
    kind,
    subject,
    tenant_id,
    if(resolutions > 0, 'resolved', 'firing') AS state,
    fired_at_ms,
    if(resolutions > 0, resolved_at_ms, 0) AS resolved_at_ms,
    value,
    threshold,
    detail
FROM (
    SELECT
        alert_id,
        rule,
        kind,
        subject,
        tenant_id,
        countIf(state = 'resolved') AS resolutions,
        toUnixTimestamp64Milli(minIf(ts, state = 'firing')) AS fired_at_ms,
        toUnixTimestamp64Milli(maxIf(ts, state = 'resolved')) AS resolved_at_ms,
        argMaxIf(value, ts, state = 'firing') AS value,
        any(threshold) AS threshold,
        argMaxIf(detail, ts, state = 'firing') AS detail
    FROM alert_events FINAL
    WHERE ts >= now64(9) - toIntervalHour({hours:UInt32})
      AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
    GROUP BY alert_id, rule, kind, subject, tenant_id
)
ORDER BY fired_at_ms DESC
LIMIT 200
