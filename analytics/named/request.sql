-- One request's row, by its id (the x-request-id header).
-- params: request_id String = ''
SELECT * FROM requests FINAL WHERE request_id = {request_id:String}
