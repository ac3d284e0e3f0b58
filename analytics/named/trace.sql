-- The requests of one W3C trace (the caller's traceparent), in time order.
-- params: trace_id String = ''
SELECT request_id, ts, origin, api, model, deployment, status, error_code, latency_ns, cost_pico_usd
FROM requests FINAL
WHERE trace_id = {trace_id:String} AND trace_id != ''
ORDER BY ts
