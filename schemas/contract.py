"""The published wire contract, generated from the Structs in ``schemas/``:

* ``contract/wire.schema.json``: a JSON Schema of every Struct on the bus
  and in the control-plane buckets;
* ``contract/asyncapi.json``: an AsyncAPI 3 document of every subject, who
  sends on it, and which messages it carries.

Both are committed, so a service in any language can publish correctly
without reading Python; a test fails when a Struct or a subject changes and
the files were not regenerated (``python -m schemas.contract``).

On the bus, messages are msgpack with a ``kind`` tag naming their type;
the entry points for services (prompt APIs, jobs, job results) also take
the same fields as JSON, and answer in the encoding they were asked in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from schemas import subjects
from schemas.analytics import QueryRequest, QueryResult, RecostRequest, RecostResult
from schemas.cached_answer import CachedAnswer, CacheStore
from schemas.control import ApiKey, ApprovalRule, ModelRoute, Subscription, Tenant
from schemas.envelope import Envelope
from schemas.events import DeadLetter, EventBatch
from schemas.health import BreakerRecord, TryOutcome, TryOutcomes
from schemas.jobs import Job, JobClaim, JobQuery, JobResult
from schemas.lifecycle import Beat, ProcessDied
from schemas.mcp import McpServer, ServerCatalog
from schemas.people import App, Invitation, PortalSession, User
from schemas.prompt_calls import ApiAnswer, ApiCall
from schemas.prompts import Prompt, PromptVersion
from schemas.replies import (
    Accepted,
    Admitted,
    Cancel,
    Chunk,
    Credit,
    Failure,
    Fence,
    Fenced,
    Final,
    Redacted,
    ReplayAsk,
)
from schemas.responses import Response, ResponsesRequest
from schemas.rest import RestService
from schemas.stored_response import StoredResponse

HERE = Path(__file__).parent / "contract"
WIRE_SCHEMA = HERE / "wire.schema.json"
ASYNCAPI = HERE / "asyncapi.json"

# Every Struct that crosses the bus or sits in a bucket another process reads.
STRUCTS: tuple[type, ...] = (
    Envelope,
    Chunk,
    Final,
    Failure,
    Accepted,
    Admitted,
    Redacted,
    Cancel,
    ReplayAsk,
    Credit,
    Fence,
    Fenced,
    ApiCall,
    ApiAnswer,
    Job,
    JobClaim,
    JobQuery,
    JobResult,
    EventBatch,
    DeadLetter,
    ProcessDied,
    Beat,
    TryOutcome,
    TryOutcomes,
    BreakerRecord,
    CacheStore,
    CachedAnswer,
    QueryRequest,
    QueryResult,
    RecostRequest,
    RecostResult,
    ApiKey,
    Tenant,
    Subscription,
    ApprovalRule,
    ModelRoute,
    Prompt,
    PromptVersion,
    ResponsesRequest,
    Response,
    StoredResponse,
    McpServer,
    ServerCatalog,
    RestService,
    User,
    Invitation,
    PortalSession,
    App,
)

_MSGPACK = "application/msgpack"
_JSON = "application/json"


def _components(ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Struct name -> its schema or a reference to it, every definition)."""
    roots, defs = msgspec.json.schema_components(STRUCTS, ref_template=ref)
    return {t.__name__: root for t, root in zip(STRUCTS, roots, strict=True)}, defs


def wire_schema() -> dict[str, Any]:
    roots, defs = _components("#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://sluice.dev/schemas/v1/wire.schema.json",
        "title": "Sluice wire contract, v1",
        "description": "Every message on Sluice's NATS subjects (msgpack, tagged by 'kind'), and the "
        "control-plane records its buckets hold.",
        "anyOf": list(roots.values()),
        "$defs": defs,
    }


# (channel id, address, parameters, messages, who sends, description)
Channel = tuple[str, str, dict[str, str], list[str], str, str]
CHANNELS: list[Channel] = [
    ("chatIn", subjects.IN_CHAT, {}, ["Envelope"], "service",
     "A chat or embeddings request from a service. Replies go to the envelope's 'reply' inbox."),
    ("apiIn", f"{subjects.IN_API}.{{slug}}", {"slug": "A published prompt API, e.g. summarize."},
     ["ApiCall"], "service", "Call a prompt API (msgpack, or the same fields as JSON)."),
    ("cancelIn", subjects.IN_CANCEL, {}, ["Cancel"], "service", "Cancel a request of yours by its id."),
    ("creditIn", subjects.IN_CREDIT, {}, ["Credit"], "service",
     "Pace a REST answer of yours that set 'flow_window': the body's bytes you have taken so far."),
    ("responsesIn", subjects.IN_RESPONSES, {}, ["ResponsesRequest"], "service",
     "OpenAI's Responses API for services: the JSON body POST /v1/responses takes, with the caller's key in "
     "an Authorization header. The reply is the JSON an HTTP caller gets (a Response, or an OpenAI error), "
     "its status in a Sluice-Status header; whole, never streamed."),
    ("taskApisIn", f"{subjects.PREFIX}.in.{{api}}", {"api": "images (generations), moderations or rerank."},
     [], "service",
     "Image generation, moderation and rerank for services, as sluice.v1.in.responses: the JSON body the "
     "HTTP path takes (POST /v1/images/generations, /v1/moderations, /v1/rerank), with the caller's key in "
     "an Authorization header; answered with the JSON an HTTP caller gets, its status in a Sluice-Status "
     "header. An image comes back as b64_json (as a URL only when [portal] base_url is set). Uploads and "
     "speech are HTTP's alone; an answer larger than one message is a 413."),
    ("mcpIn", subjects.IN_MCP, {}, [], "service",
     "MCP for services: one JSON-RPC request (tools/list, tools/call, prompts/list, prompts/get, "
     "resources/list, resources/read, ping) as JSON, with the caller's key in an Authorization header; "
     "answered with the JSON-RPC response (a refusal is a JSON-RPC error whose data holds the HTTP status, "
     "type and code). Tools are named <server>__<tool>, as on /mcp."),
    ("jobs", f"{subjects.JOBS}.{{api}}", {"api": "chat, messages, embeddings, or api.<slug> (a prompt API)."},
     ["Job"], "service",
     "A durable job, with the caller's key: the ingress checks it and queues the job (under its tenant, "
     "with the key's id, never its secret) until run once, and answers with JetStream's acknowledgement, "
     "whose sequence is the job's id (publish it as to a stream). A Nats-Msg-Id header makes a "
     "resubmission within a day a no-op."),
    ("jobQueue", f"{subjects.JOB_QUEUE}.{{queue}}", {"queue": "<tenant>.<api>: the job's tenant and API."},
     ["Job"], "gateway",
     "The work queue (stream SLUICE_JOBS), written by the ingress alone; one consumer per tenant, whose "
     "ack limit is the tenant's job concurrency."),
    ("batchQueue", f"{subjects.BATCH_QUEUE}.{{queue}}", {"queue": "<tenant>.<api>: the batch's tenant and API."},
     [], "gateway",
     "A batch's lines (the Batch API: each a JSON object with the batch's id, the line's number, custom_id "
     "and body), in the jobs stream apart from the tenant's jobs, written by the ingress alone; one consumer "
     "per tenant, whose ack limit is the tenant's batch concurrency."),
    ("controlJobs", subjects.CONTROL_JOBS, {}, [], "gateway", "A tenant's jobs were queued: runners look now."),
    ("jobResultIn", subjects.JOBS_RESULT, {}, ["JobQuery"], "service",
     "Ask for a job's result (answered with a JobResult, or a Failure: 202 job_pending, 404 job_not_found)."),
    ("replies", "_INBOX.{inbox}", {"inbox": "The caller's own inbox."},
     ["Admitted", "Redacted", "Accepted", "Fenced", "Chunk", "Final", "Failure", "ApiAnswer", "JobResult"],
     "gateway",
     "Answers, in order (each Chunk, Final and Failure has a 'seq'); Admitted and Accepted say how far a "
     "request got, to a requester that set 'progress'."),
    ("jobReplies", f"{subjects.JOB_REPLIES}.{{request_id}}", {"request_id": "job-<job id>"},
     ["Admitted", "Redacted", "Accepted", "Fenced", "Chunk", "Final", "Failure", "JobClaim"], "gateway",
     "A job's request answers here; a stream keeps it, so a runner taking a job over sees how far it got."),
    ("fromIngress", subjects.FROM_INGRESS, {}, ["Envelope"], "gateway",
     "Requests from the gateway's own front doors (HTTP, WebSocket, prompt APIs, jobs): only they may publish."),
    ("stages", f"{subjects.PREFIX}.stage.{{stage}}", {"stage": "redact, route, cache or call"},
     ["Envelope"], "gateway", "The pipeline: each stage publishes the envelope to the next on its slip."),
    ("controlCancel", subjects.CONTROL_CANCEL, {}, ["Cancel"], "gateway", "The ingress cancels a request."),
    ("controlReplay", subjects.CONTROL_REPLAY, {}, ["ReplayAsk"], "gateway",
     "The ingress asks the provider holding a request to send its replies again from a seq on."),
    ("controlCredit", subjects.CONTROL_CREDIT, {}, ["Credit"], "gateway",
     "The ingress paces a REST answer: the provider holding it sends at most the envelope's 'flow_window' "
     "bytes past the credit, then waits (and so does the service's connection)."),
    ("controlFence", subjects.CONTROL_FENCE, {}, ["Fence"], "gateway",
     "Before a request is sent again, every provider says (a Fenced reply) whether it holds it, and if not "
     "refuses every older copy from then on; policy, hearing it too, admits no older copy."),
    ("cacheStore", subjects.CACHE_STORE, {}, ["CacheStore"], "gateway", "An answer to keep in the response cache."),
    ("health", subjects.HEALTH_ATTEMPT, {}, ["TryOutcome", "TryOutcomes"], "gateway",
     "Every upstream try's outcome, heard by every routing replica: a failed one at once, successful ones "
     "gathered for a few milliseconds and sent together."),
    ("events", f"{subjects.PREFIX}.events.{{stage}}", {"stage": "The stage that sent the batch."},
     ["EventBatch"], "gateway", "Analytics events, in batches, kept by the SLUICE_EVENTS stream."),
    ("deadLetters", subjects.DEAD_LETTER, {}, ["DeadLetter"], "gateway", "Events the sink could not store."),
    ("analyticsQuery", subjects.ANALYTICS_QUERY, {}, ["QueryRequest"], "operator",
     "A named analytics query, in JSON; answered with a QueryResult in JSON."),
    ("analyticsRecost", subjects.ANALYTICS_RECOST, {}, ["RecostRequest"], "operator",
     "Recompute stored requests' cost from the current catalog, in JSON; answered with a RecostResult in JSON."),
    ("processDied", subjects.CONTROL_DIED, {}, ["ProcessDied"], "gateway",
     "The supervisor tells that a process died."),
    ("processReady", f"{subjects.CONTROL_READY}.{{process}}", {"process": "e.g. provider-1"}, [], "gateway",
     "A process tells the supervisor it serves (an empty message)."),
    ("processHeartbeat", f"{subjects.CONTROL_HEARTBEAT}.{{process}}", {"process": "e.g. provider-1"}, ["Beat"],
     "gateway", "A process says it is alive, once a second: what it serves and holds."),
    ("quota", f"{subjects.QUOTA}.{{counter}}", {"counter": "e.g. rate.key.<id>.rpm.<window>"}, [], "gateway",
     "Shared limit and budget counters (JetStream counter streams SLUICE_RATES and SLUICE_SPEND)."),
    ("controlRecords", "$KV.{bucket}.{key}", {"bucket": "sluice_keys, sluice_tenants, sluice_models, "
     "sluice_subscriptions, sluice_approval_rules, sluice_prompts, sluice_prompt_versions, sluice_health, "
     "sluice_mcp_servers, sluice_mcp_catalog (written by the provider stage), sluice_services, "
     "sluice_users, sluice_invitations, sluice_portal_sessions, sluice_apps",
     "key": "The record's id."},
     ["ApiKey", "Tenant", "ModelRoute", "Subscription", "ApprovalRule", "Prompt", "PromptVersion",
      "BreakerRecord", "McpServer", "ServerCatalog", "RestService", "User", "Invitation", "PortalSession", "App"],
     "admin",
     "The control plane (written by the admin API and the config seed, audited; read by every stage's watch)."),
]  # fmt: skip


def asyncapi() -> dict[str, Any]:
    roots, defs = _components("#/components/schemas/{name}")
    schemas = dict(defs)
    for name, root in roots.items():  # a root that is only a reference is defined already
        if "$ref" not in root:
            schemas[name] = root
    used = sorted({m for *_, messages, _, _ in CHANNELS for m in messages})
    json_too = {"ApiCall", "ApiAnswer", "Job", "JobQuery", "JobResult", "QueryRequest", "QueryResult", "Failure"}
    messages = {
        name: {
            "name": name,
            "contentType": _JSON if name.startswith(("Query", "Recost", "Responses")) else _MSGPACK,
            "payload": {"$ref": f"#/components/schemas/{name}"},
            **({"description": "Also accepted and answered as JSON."} if name in json_too else {}),
        }
        for name in used
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for cid, address, params, names, sender, description in CHANNELS:
        channels[cid] = {
            "address": address,
            "description": description,
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
        }
        if params:
            channels[cid]["parameters"] = {k: {"description": v} for k, v in params.items()}
        # Operations from a service's point of view: it sends on its entry
        # points and receives on its inbox; the rest is the gateway's own.
        action = "send" if sender in ("service", "operator") else "receive"
        operations[f"{action}_{cid}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": f"{'You send' if action == 'send' else 'Sent by the ' + sender}: {description.split('.')[0]}.",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Sluice over NATS",
            "version": "1",
            "description": "Every subject of the gateway. Services connect with their own NATS user "
            "(`sluice nats-user create`), may publish only to sluice.v1.in.> and sluice.v1.jobs.>, and "
            "read only their own inbox. The caller's API key rides in the Authorization header.",
        },
        "defaultContentType": _MSGPACK,
        "servers": {"local": {"host": "127.0.0.1:4222", "protocol": "nats"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def main() -> None:
    HERE.mkdir(exist_ok=True)
    WIRE_SCHEMA.write_text(render(wire_schema()))
    ASYNCAPI.write_text(render(asyncapi()))
    print(f"wrote {WIRE_SCHEMA} and {ASYNCAPI}")


if __name__ == "__main__":
    main()
