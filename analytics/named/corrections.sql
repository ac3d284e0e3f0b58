-- Cost corrections made by `sluice analytics recost`, of one request or one
-- run: the cost as recorded before and after (the requests row keeps the original).
-- params: request_id String = '', recost_id String = '', tenant_id String = ''
SELECT request_id, ts, recost_id, corrected_at, tenant_id, model, deployment,
       toString(old_cost_pico_usd) AS old_cost_pico_usd, toString(new_cost_pico_usd) AS new_cost_pico_usd
FROM cost_corrections FINAL
WHERE ({request_id:String} = '' OR request_id = {request_id:String})
  AND ({recost_id:String} = '' OR recost_id = {recost_id:String})
  AND ({tenant_id:String} = '' OR tenant_id = {tenant_id:String})
ORDER BY corrected_at, ts
LIMIT 10000
