-- Issue 27: a call to a REST service is a request of api "rest". Its row
-- names the service (slug and version), the HTTP method, the OpenAPI route
-- template the path matched ('/users/{id}', '' when none did: never the
-- path itself, which holds ids) and, in the columns migration 019 added,
-- the request and response body sizes. Its status is the upstream's own.
-- The named query rest_calls reads them from requests (no table of their
-- own: nothing here is not on the request row already).
ALTER TABLE requests ADD COLUMN IF NOT EXISTS rest_service LowCardinality(String);
ALTER TABLE requests ADD COLUMN IF NOT EXISTS rest_version UInt32;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS http_method LowCardinality(String);
ALTER TABLE requests ADD COLUMN IF NOT EXISTS route LowCardinality(String);
