-- One prompt-API call's own row (the api_calls table), by its id.
-- params: request_id String = ''
SELECT * FROM api_calls FINAL WHERE request_id = {request_id:String}
