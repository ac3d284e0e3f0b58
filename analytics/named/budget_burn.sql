-- Budget burn-down: spend per hour and running total since a time (the start
-- of a budget's period), for a tenant or one of its keys, from the hourly rollup.
-- params: since_ns UInt64 = 0, tenant_id String = '', key_id String = ''
SELECT toUnixTimestamp(hour) AS hour, toString(cost) AS cost_pico_usd,
       toString(sum(cost) OVER (ORDER BY hour)) AS total_pico_usd
FROM (
    SELECT hour, sumMerge(cost_pico_usd) AS cost
    FROM requests_hourly
    WHERE hour >= toStartOfHour(fromUnixTimestamp64Nano(toInt64({since_ns:UInt64})))
      AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
      AND ({key_id:String} = '' OR key_id = {key_id:String})
    GROUP BY hour
)
ORDER BY hour
