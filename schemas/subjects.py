"""NATS subjects (DESIGN.md §3). The wire version is part of every name."""

from __future__ import annotations

PREFIX = "sluice.v1"

# Internal services publish requests here (any API: the envelope says which).
IN_CHAT = f"{PREFIX}.in.chat"
# A prompt API called over the bus: ``sluice.v1.in.api.<slug>`` (served by
# the ingress processes, queue group "apis").
IN_API = f"{PREFIX}.in.api"
IN_API_ALL = f"{IN_API}.*"


def in_api(slug: str) -> str:
    return f"{IN_API}.{slug}"


# A client API in its own JSON shape for services (``ingress.api_bus``):
# ``sluice.v1.in.responses`` (OpenAI's Responses API), and those of
# ``CLIENT_APIS_ON_THE_BUS`` alike (``sluice.v1.in.<api>``).
IN_RESPONSES = f"{PREFIX}.in.responses"
# The client APIs served so: answered in JSON, from a JSON body (not the
# uploads, nor speech's audio).
CLIENT_APIS_ON_THE_BUS = ("responses", "images", "moderations", "rerank")


def in_client_api(name: str) -> str:
    return f"{PREFIX}.in.{name}"


# Durable jobs: ``sluice.v1.jobs.<api>`` (chat, messages, embeddings) and
# ``sluice.v1.jobs.api.<slug>`` for a prompt API, kept in a work-queue stream
# until a runner (in the ingress processes) finished them. A job's requests
# answer on ``_INBOX.jobs.<request id>``, kept in a stream of their own, so a
# runner that takes a job over after a crash sees how far it got. Results
# are kept in a bucket, read with a request on JOBS_RESULT.
JOBS = f"{PREFIX}.jobs"
JOBS_STREAM = "SLUICE_JOBS"
JOB_REPLIES = "_INBOX.jobs"
JOB_REPLIES_STREAM = "SLUICE_JOB_REPLIES"
JOBS_RESULT = f"{PREFIX}.in.jobs.result"
# What a caller publishes on ``sluice.v1.jobs.<api>`` is taken by the
# ingress (queue group "jobs"): it checks the key and queues the job under
# ``sluice.v1.jobq.<tenant>.<api>`` with the key's id (never its secret),
# and answers with the stream's acknowledgement. Each tenant has a consumer
# of its own whose ack limit is the tenant's job concurrency, across every
# runner; runners take from tenants in turn.
JOB_QUEUE = f"{PREFIX}.jobq"
# Runners are told (core NATS) that a tenant has new jobs, so they look now.
CONTROL_JOBS = f"{PREFIX}.control.jobs"
# On a job's request: the key it runs under, set only by the gateway's own ingress.
KEY_ID_HEADER = "Sluice-Key-Id"
# On a background response's job (set by the ingress alone: the intake never
# copies a caller's): the response id its answer is stored under.
RESPONSE_ID_HEADER = "Sluice-Response-Id"
KV_JOB_RESULTS = "sluice_job_results"
# Alert rules' firing alerts (the evaluator's state), and the webhook deliveries made.
KV_ALERTS = "sluice_alerts"
KV_ALERT_DELIVERIES = "sluice_alert_deliveries"


def jobs(api: str) -> str:
    return f"{JOBS}.{api}"


def job_queue(tenant_id: str, api: str) -> str:
    return f"{JOB_QUEUE}.{tenant_id}.{api}"


def jobs_consumer(tenant_id: str) -> str:
    return f"jobs-{tenant_id}"


# The gateway's own ingress publishes here: only its credentials may, so a
# request on this subject is known to come from HTTP (``origin``), with the
# id, arrival time and deadline the ingress stamped.
FROM_INGRESS = f"{PREFIX}.ingress.request"
STAGE_REDACT = f"{PREFIX}.stage.redact"
STAGE_ROUTE = f"{PREFIX}.stage.route"
STAGE_CACHE = f"{PREFIX}.stage.cache"
STAGE_CALL = f"{PREFIX}.stage.call"
# An answer to keep, from the provider after its Final went out (queue group
# "cache"): stores never sit on the reply path.
CACHE_STORE = f"{PREFIX}.cache.store"
# Not queue-grouped: every provider replica hears a cancel and the one that
# holds the request stops it.
CONTROL_CANCEL = f"{PREFIX}.control.cancel"
# Not queue-grouped either: the provider holding the request sends its
# replies again (``Replay``); the others ignore it.
CONTROL_REPLAY = f"{PREFIX}.control.replay"
# The same, for services that called over the bus (they may publish only under "in").
IN_CANCEL = f"{PREFIX}.in.cancel"
# Not queue-grouped either: the provider holding the request paces a REST
# answer by these (``Credit``); the others ignore it. IN_CREDIT is the same
# for services that called over the bus.
CONTROL_CREDIT = f"{PREFIX}.control.credit"
IN_CREDIT = f"{PREFIX}.in.credit"
# Published by the ingress, heard by every provider replica (not queue-grouped).
CONTROL_FENCE = f"{PREFIX}.control.fence"
ANALYTICS_QUERY = f"{PREFIX}.analytics.query"
# Re-costing stored requests from the current catalog: the admin's alone.
ANALYTICS_RECOST = f"{PREFIX}.analytics.recost"
# Process life, between every process and the supervisor: each process says
# it serves (ready) and that it is alive (heartbeat, once a second); the
# supervisor says which process died, so that requests it held end at once.
CONTROL_READY = f"{PREFIX}.control.ready"
CONTROL_HEARTBEAT = f"{PREFIX}.control.heartbeat"
CONTROL_DIED = f"{PREFIX}.control.died"

# What the sink could not store, with the reason (core NATS, for whoever watches;
# the same records land in the ``dead_letters`` table).
DEAD_LETTER = f"{PREFIX}.deadletter.events"

EVENTS_STREAM = "SLUICE_EVENTS"
# The analytics sink's durable consumer of that stream.
SINK_DURABLE = "analytics-sink"
EVENTS_ALL = f"{PREFIX}.events.>"


def events(stage: str) -> str:
    return f"{PREFIX}.events.{stage}"


# Every upstream try's outcome, from each provider replica to every routing
# replica (core NATS, no queue group): the input of the shared breakers,
# latency averages and in-flight counts.
HEALTH_ATTEMPT = f"{PREFIX}.health.attempt"

# Control-plane KV buckets.
KV_KEYS = "sluice_keys"
KV_MODELS = "sluice_models"
KV_TENANTS = "sluice_tenants"
KV_SUBSCRIPTIONS = "sluice_subscriptions"
KV_APPROVAL_RULES = "sluice_approval_rules"
# key id -> when it was last used (ms), written by policy a few times a minute.
KV_KEY_USAGE = "sluice_key_usage"
# Prompts: name -> its labels and API; "<name>.<version>" -> one immutable version.
KV_PROMPTS = "sluice_prompts"
KV_PROMPT_VERSIONS = "sluice_prompt_versions"
# Cached answers, shared by every replica: a KV-shaped stream whose entries
# each carry their own TTL (``Nats-TTL``), keyed by a hash of the request.
KV_CACHE = "sluice_cache"
# deployment name -> its breaker state, written by routing replicas when it
# changes: what `sluice routes` shows and what a replica starting up begins from.
KV_HEALTH = "sluice_health"
# Request ids policy has taken: it writes each with create, and reads them.
KV_REQUEST_IDS = "sluice_request_ids"
# The analytics sink's writer lease: one sink replica writes at a time.
KV_SINK_LEASE = "sluice_sink_lease"
# The Responses API's answers, "<tenant>.<response id>" -> its conversation
# (``services.bus.stored_responses``); entries age out after ``responses_ttl_s``.
KV_RESPONSES = "sluice_responses"
# The MCP gateway: upstream servers by name (``schemas.mcp.McpServer``), what
# each offers (``ServerCatalog``, kept by the provider stage), and the
# sessions the ingress opened ("<session id>" -> its caller), which age out.
KV_MCP_SERVERS = "sluice_mcp_servers"
KV_MCP_CATALOG = "sluice_mcp_catalog"
KV_MCP_SESSIONS = "sluice_mcp_sessions"
# MCP for services on the bus: a JSON-RPC request (tools/list, tools/call,
# prompts/list, prompts/get, resources/list, resources/read) with the key in
# the Authorization header, answered with the JSON-RPC response.
IN_MCP = f"{PREFIX}.in.mcp"

# REST services published through the gateway (schemas.rest), by
# ``<slug>.v<version>``.
KV_SERVICES = "sluice_services"
# The developer portal's people (schemas.people): users by id, one-time
# invitations and sign-in sessions by their token's digest (sessions age
# out), and apps by id.
KV_USERS = "sluice_users"
KV_INVITATIONS = "sluice_invitations"
KV_PORTAL_SESSIONS = "sluice_portal_sessions"
KV_APPS = "sluice_apps"

# Bytes too large for a message (schemas.tasks.BlobRef), in JetStream object
# stores (services.bus.blobs), named "<tenant>/<kind>/<id>": the Files API's
# files (kind "file") are kept until deleted or expired; uploads (audio,
# images to edit: "upload") and images made ("image") age out of their own
# store after ``media_ttl_s`` (an image's URL lives as long).
OBJ_BLOBS = "sluice_blobs"
OBJ_MEDIA = "sluice_media"
# The Files API's records (schemas.files.FileRecord), "<tenant>.<file id>";
# and the Batch API's (schemas.batches.BatchRecord), "<tenant>.<batch id>".
KV_FILES = "sluice_files"
KV_BATCHES = "sluice_batches"
# A batch's lines run as durable jobs, queued under the tenant in the jobs
# stream (``sluice.v1.batchq.<tenant>.<api>``) apart from its other jobs (a
# work queue's consumers may not overlap): each tenant's are taken by a
# consumer of their own ("batch-<tenant>", its ack limit the tenant's batch
# concurrency), so a batch never starves the tenant's jobs. Each line's
# outcome is written once to KV_BATCH_LINES, "<batch id>.o.<line>".
BATCH_QUEUE = f"{PREFIX}.batchq"
KV_BATCH_LINES = "sluice_batch_lines"


def batch_queue(tenant_id: str, api: str) -> str:
    return f"{BATCH_QUEUE}.{tenant_id}.{api}"


def batch_consumer(tenant_id: str) -> str:
    return f"batch-{tenant_id}"


# Shared counters for limits and budgets (JetStream streams with
# ``allow_msg_counter``): one subject per counter, e.g.
# ``sluice.v1.quota.rate.key.<id>.rpm.<window>``. Rates live in a stream whose
# entries age out; spend in one that keeps them.
QUOTA = f"{PREFIX}.quota"
RATES_STREAM = "SLUICE_RATES"
RATES_ALL = f"{QUOTA}.rate.>"
SPEND_STREAM = "SLUICE_SPEND"
SPEND_ALL = f"{QUOTA}.spend.>"

# Header that carries the caller's API key on a request published to NATS.
API_KEY_HEADER = "Authorization"
# W3C trace context, from a caller on the bus or passed on by the ingress.
TRACEPARENT_HEADER = "traceparent"
