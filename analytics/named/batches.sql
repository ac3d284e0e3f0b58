-- Batches (OpenAI's Batch API; each line runs as a request of its own) with
-- lines in the last N hours, one row per batch, newest first: its lines
-- (one row each, a line run again counted once), those that succeeded and
-- failed, tokens in and out, units (and of what) and the exact cost, when
-- its first line came in and its last one ended. batch_id narrows to one
-- batch; tenant "" means every tenant.
-- params: hours UInt32 = 168, tenant_id String = '', batch_id String = ''
SELECT
    batch_id,
    tenant_id,
    count() AS lines,
    countIf(status < 400) AS succeeded,
    countIf(status >= 400) AS failed,
    sum(toUInt64(prompt_tokens)) AS prompt_tokens,
    sum(toUInt64(completion_tokens)) AS completion_tokens,
    sum(units) AS units,
    arrayStringConcat(arraySort(groupUniqArrayIf(unit, unit != '')), ',') AS unit,
    toString(sum(cost_pico_usd)) AS cost_pico_usd,
    min(toUnixTimestamp64Milli(ts)) AS first_ms,
    max(toUnixTimestamp64Milli(ts) + intDiv(latency_ns, 1000000)) AS last_ms
FROM requests FINAL
WHERE batch_id != ''
  AND ts >= now64(9) - toIntervalHour({hours:UInt32})
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
  AND ({batch_id:String} = '' OR batch_id = {batch_id:String})
GROUP BY batch_id, tenant_id
ORDER BY last_ms DESC, batch_id
