-- Each key's last hour (cost in pico-USD, or tokens) against its average hour
-- over the trailing hours before it: value is the ratio.
-- params: trailing_hours UInt32 = 24, measure String = 'cost', min_value Float64 = 0
SELECT concat(tenant_id, '/', key_id) AS subject, tenant_id,
       if(avg_hour > 0, last_hour / avg_hour, if(last_hour > 0, inf, 0)) AS value, last_hour AS volume,
       concat('last hour ', toString(last_hour), ', trailing hourly average ', toString(round(avg_hour, 1))) AS detail
FROM (
    SELECT tenant_id, key_id, sum(last) AS last_hour, sum(before) / {trailing_hours:UInt32} AS avg_hour
    FROM (
        SELECT tenant_id, key_id,
               if({measure:String} = 'tokens', toFloat64(sumMerge(prompt_tokens) + sumMerge(completion_tokens)), toFloat64(sumMerge(cost_pico_usd))) AS last,
               0 AS before
        FROM requests_minutely
        WHERE minute >= now() - toIntervalHour(1)
        GROUP BY tenant_id, key_id
        UNION ALL
        SELECT tenant_id, key_id, 0 AS last,
               if({measure:String} = 'tokens', toFloat64(sumMerge(prompt_tokens) + sumMerge(completion_tokens)), toFloat64(sumMerge(cost_pico_usd))) AS before
        FROM requests_minutely
        WHERE minute >= now() - toIntervalHour(1 + {trailing_hours:UInt32}) AND minute < now() - toIntervalHour(1)
        GROUP BY tenant_id, key_id
    )
    GROUP BY tenant_id, key_id
)
WHERE last_hour > 0 AND last_hour >= {min_value:Float64}
