-- Calls to REST services over the last N hours, per service (and version),
-- route template and method: calls, failed calls (400 or above, the
-- upstream's own status included), latency p50/p95 (ms, of every call),
-- cost, and the bytes of request and response bodies. A call the ingress
-- refused before it knew more than the name is counted under the service
-- its name gives ("service:<slug>[/v<N>]"), with no route or method. Every
-- filter is optional: tenant "" means every tenant, key_ids (ids joined by
-- ",") "" every key of it, service "" every service.
-- params: hours UInt32 = 24, tenant_id String = '', key_ids String = '', service String = ''
WITH calls AS (
    SELECT
        if(rest_service != '', rest_service, extract(model, '^service:([a-z0-9-]+)')) AS service,
        if(rest_version != 0, rest_version, toUInt32OrZero(if(match(model, '/v[0-9]+$'),
           extract(model, '/v([0-9]+)$'), '1'))) AS version,
        route,
        http_method AS method,
        status,
        latency_ns,
        cost_pico_usd,
        request_bytes,
        response_bytes
    FROM requests FINAL
    WHERE api = 'rest'
      AND ts >= now64(9) - toIntervalHour({hours:UInt32})
      AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
      AND ({key_ids:String} = '' OR has(splitByChar(',', {key_ids:String}), key_id))
)
SELECT
    service,
    version,
    route,
    method,
    count() AS calls,
    countIf(status >= 400) AS errors,
    arrayMap(x -> round(x / 1e6, 2), quantiles(0.5, 0.95)(latency_ns)) AS latency_ms,
    toString(sum(cost_pico_usd)) AS cost_pico_usd,
    sum(request_bytes) AS request_bytes,
    sum(response_bytes) AS response_bytes
FROM calls
WHERE {service:String} = '' OR service = {service:String}
GROUP BY service, version, route, method
ORDER BY calls DESC, service, version, route, method
