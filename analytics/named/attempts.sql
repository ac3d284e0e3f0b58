-- One request's upstream tries, in order.
-- params: request_id String = ''
SELECT * FROM attempts FINAL WHERE request_id = {request_id:String} ORDER BY ts
