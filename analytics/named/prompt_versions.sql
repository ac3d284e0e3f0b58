-- A prompt's versions side by side (a rollout, a rollback): calls, errors,
-- answers that broke the output schema, cost and latency per version since a
-- time.
-- params: since_ns UInt64 = 0, prompt String = ''
SELECT prompt_name, prompt_version, count() AS calls, countIf(status != 200) AS errors,
       sum(schema_failures) AS schema_failures,
       countIf(error_code = 'output_schema_mismatch') AS schema_errors,
       toString(sum(cost_pico_usd)) AS total_cost_pico_usd,
       toString(intDiv(sum(cost_pico_usd), count())) AS avg_cost_pico_usd,
       round(quantile(0.5)(latency_ns) / 1e6, 1) AS p50_latency_ms,
       round(quantile(0.99)(latency_ns) / 1e6, 1) AS p99_latency_ms
FROM api_calls FINAL
WHERE prompt_name != '' AND ts >= fromUnixTimestamp64Nano(toInt64({since_ns:UInt64}))
  AND ({prompt:String} = '' OR prompt_name = {prompt:String})
GROUP BY prompt_name, prompt_version
ORDER BY prompt_name, prompt_version
