-- Share of REST calls that failed (400 or above: the service's own 4xx and
-- 5xx as the gateway's), per service ("billing", "billing/v2") or with
-- by = 'route' per service, method and route template ("billing GET
-- /invoices/{id}"), over the last N minutes. Counted: calls of a known key
-- to a service that exists, so no subject is a name a stranger made up;
-- calls whose client left are left out (a 499 says nothing of the service).
-- params: minutes UInt32 = 5, by String = 'service', min_requests UInt32 = 10
SELECT subject, '' AS tenant_id, errors / calls AS value, calls AS volume,
       concat(toString(errors), ' of ', toString(calls), ' calls failed (', toString(answered),
              ' of them answered so by the service)') AS detail
FROM (
    SELECT if({by:String} = 'route', concat(service, ' ', http_method, ' ', if(route = '', '(no route)', route)),
              service) AS subject,
           count() AS calls, countIf(status >= 400) AS errors, countIf(status >= 400 AND error_code = '') AS answered
    FROM (
        SELECT if(rest_version > 1, concat(rest_service, '/v', toString(rest_version)), rest_service) AS service,
               http_method, route, status, error_code
        FROM requests FINAL
        WHERE api = 'rest' AND ts >= now64(9) - toIntervalMinute({minutes:UInt32})
          AND rest_service != '' AND key_id != '' AND error_code != 'service_not_found' AND NOT client_disconnected
    )
    GROUP BY subject
)
WHERE calls >= {min_requests:UInt32}
