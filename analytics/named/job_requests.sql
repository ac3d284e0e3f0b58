-- Durable jobs' requests: rows per request (a job run twice would show 2) and
-- what each cost.
SELECT request_id, count() AS rows, toString(sum(cost_pico_usd)) AS cost_pico_usd
FROM requests FINAL
WHERE origin = 'job'
GROUP BY request_id
ORDER BY request_id
