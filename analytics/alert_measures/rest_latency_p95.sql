-- p95 latency (ms) of REST calls that did not fail (below 400), per service
-- ("billing", "billing/v2") or with by = 'route' per service, method and
-- route template, over the last N minutes. A call's latency runs to its
-- answer's last byte (a download's whole transfer). Calls whose client left
-- are left out, as are strangers' (see rest_error_rate).
-- params: minutes UInt32 = 5, by String = 'service', min_requests UInt32 = 10
SELECT subject, '' AS tenant_id, p[2] AS value, calls AS volume,
       concat('p50 ', toString(round(p[1], 1)), ' ms, p95 ', toString(round(p[2], 1)), ' ms over ',
              toString(calls), ' calls') AS detail
FROM (
    SELECT if({by:String} = 'route', concat(service, ' ', http_method, ' ', if(route = '', '(no route)', route)),
              service) AS subject,
           count() AS calls, quantiles(0.5, 0.95)(latency_ns / 1e6) AS p
    FROM (
        SELECT if(rest_version > 1, concat(rest_service, '/v', toString(rest_version)), rest_service) AS service,
               http_method, route, latency_ns
        FROM requests FINAL
        WHERE api = 'rest' AND ts >= now64(9) - toIntervalMinute({minutes:UInt32})
          AND rest_service != '' AND key_id != '' AND status < 400 AND NOT client_disconnected
    )
    GROUP BY subject
)
WHERE calls >= {min_requests:UInt32}
