-- The requests a prompt-API call made (its steps and repairs).
-- params: parent_id String = ''
SELECT * FROM requests FINAL WHERE parent_id = {parent_id:String} ORDER BY ts
