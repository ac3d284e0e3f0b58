-- Issue 25: what of a request the answering deployment never got, because
-- the unified request could not carry it to that family (a context_management,
-- a thinking block, a tool that runs on OpenAI's side): named per request.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS dropped Array(LowCardinality(String));
