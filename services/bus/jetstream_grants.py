"""What each process role may do with JetStream, as a table.

Every JetStream operation is a publish: a request to an API subject that
names the stream (and the consumer) it acts on (``$JS.API.STREAM.INFO.<stream>``,
``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``), a message onto a subject a
stream captures (a KV put is a publish to ``$KV.<bucket>.<key>``), an ack to
``$JS.ACK.<stream>.<consumer>.…``. So a role's JetStream rights are publish
permissions, and granting ``$JS.API.>`` would let any stage purge or delete
every stream, bucket and consumer. Each helper below names one way a role uses
a stream or bucket and gives exactly the subjects nats-py 2.16 sends for it
(read from ``nats/js/client.py``, ``manager.py`` and ``kv.py``); what no helper
gives (purge, stream or consumer delete, stream create or update) only the
``admin`` role may do, with one exception: deleting an object of the object
stores is a purge (``deletes_objects``), which the ingress alone has.
Deliveries and API answers arrive on the role's own inbox, which it reads
already.

A KV put, delete and purge are all publishes to the key's subject, told apart
by a header the server's permissions do not see: a role that writes a bucket
can also delete its keys. Only what must write a bucket does.
"""

from __future__ import annotations

from typing import NamedTuple

from schemas import subjects

API = "$JS.API"


class Grant(NamedTuple):
    """One use of one stream or bucket, and the publish permissions it takes."""

    does: str
    on: str
    publish: tuple[str, ...]


def _kv(bucket: str) -> str:
    return f"KV_{bucket}"


def _watch(stream: str) -> tuple[str, ...]:
    # An ordered consumer (a KV watch, ``ordered_consumer=True``) is created
    # without a name, on ``CONSUMER.CREATE.<stream>``, which the server allows
    # for ephemeral consumers only; it names it, and removes it once nobody
    # listens. nats-py asks for its info once, and answers flow control.
    return (f"{API}.CONSUMER.CREATE.{stream}", f"{API}.CONSUMER.INFO.{stream}.*", f"$JS.FC.{stream}.>")


def _get(stream: str) -> tuple[str, ...]:
    # A message by subject or sequence: direct (a stream with ``allow_direct``)
    # or through the stream's leader; which one depends on the stream.
    return (f"{API}.DIRECT.GET.{stream}", f"{API}.DIRECT.GET.{stream}.>", f"{API}.STREAM.MSG.GET.{stream}")


def follows(*buckets: str) -> tuple[Grant, ...]:
    """Keeps a copy of a bucket current with a watch (``KvMirror``)."""
    return tuple(Grant("follows", b, (f"{API}.STREAM.INFO.{_kv(b)}", *_watch(_kv(b)))) for b in buckets)


def reads(*buckets: str) -> tuple[Grant, ...]:
    """Reads keys (``kv.get``, ``read_bucket``): never changes one."""
    return tuple(Grant("reads", b, (f"{API}.STREAM.INFO.{_kv(b)}", *_get(_kv(b)))) for b in buckets)


def writes(*buckets: str) -> tuple[Grant, ...]:
    """Reads and writes keys (put, create, update, delete of one key); never
    purges or deletes the bucket."""
    return tuple(Grant("writes", b, (*reads(b)[0].publish, f"$KV.{b}.>")) for b in buckets)


def caches() -> tuple[Grant, ...]:
    """The response cache (a KV-shaped stream of its own): follows which keys
    exist from the headers, reads an entry directly, stores answers."""
    stream = _kv(subjects.KV_CACHE)
    return (Grant("caches in", subjects.KV_CACHE, (*_watch(stream), *_get(stream), f"$KV.{subjects.KV_CACHE}.>")),)


def _obj(bucket: str) -> str:
    return f"OBJ_{bucket}"


def reads_objects(*buckets: str) -> tuple[Grant, ...]:
    """Reads objects (``services.bus.blobs``): the meta's last message, then
    each chunk by sequence; message gets only, no consumer."""
    return tuple(Grant("reads objects of", b, _get(_obj(b))) for b in buckets)


def writes_objects(*buckets: str) -> tuple[Grant, ...]:
    """Puts objects: their chunks, then their meta (a publish with a rollup
    header, which the permissions do not see: a writer may replace any
    object's meta of the store). Never removes chunks."""
    return tuple(Grant("writes objects to", b, (f"$O.{b}.C.>", f"$O.{b}.M.>")) for b in buckets)


def deletes_objects(*buckets: str) -> tuple[Grant, ...]:
    """Deletes objects, and removes the chunks of a write it could not
    finish: a purge of one subject. The purge's filter is in the request's
    body, which the permissions do not see, so this is the right to purge
    the whole store: given only to the role that owns the files."""
    return tuple(Grant("deletes objects of", b, (f"{API}.STREAM.PURGE.{_obj(b)}",)) for b in buckets)


def counts() -> tuple[Grant, ...]:
    """Adds to the limit and budget counters (a publish each counter stream
    captures): policy takes, whichever stage ends a request settles."""
    return (Grant("adds to", f"{subjects.RATES_STREAM}, {subjects.SPEND_STREAM}", (f"{subjects.QUOTA}.>",)),)


def reads_last(stream: str, under: str) -> tuple[Grant, ...]:
    """Reads a subject's last message, directly (a budget counter's value)."""
    return (Grant("reads last of", stream, (f"{API}.DIRECT.GET.{stream}.{under}",)),)


def reads_messages(stream: str) -> tuple[Grant, ...]:
    """Reads single messages by sequence or last by subject; no consumer."""
    return (Grant("reads messages of", stream, (f"{API}.STREAM.MSG.GET.{stream}",)),)


def replays(stream: str) -> tuple[Grant, ...]:
    """Reads a subject's messages again through an ordered consumer."""
    return (Grant("replays", stream, _watch(stream)),)


def pulls(stream: str, consumer: str, filter_subject: str) -> tuple[Grant, ...]:
    """Takes messages from a durable pull consumer it creates at start (or
    finds), and acks them. ``consumer`` may be ``*`` for a family of durables
    named from config (one per webhook), all filtered on ``filter_subject``."""
    publish = (
        f"{API}.CONSUMER.INFO.{stream}.{consumer}",
        # A consumer named in its config is created with its filter in the
        # subject (``pull_subscribe``), so the grant holds the filter too...
        f"{API}.CONSUMER.CREATE.{stream}.{consumer}.{filter_subject}",
        f"{API}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
    )
    # ...one given only a durable name (``add_consumer``) in the older form,
    # which says nothing of the filter: never granted for a family of names.
    durable = (f"{API}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",) if consumer != "*" else ()
    return (Grant("pulls", f"{stream} ({consumer})", (*publish, *durable)),)


def runs_jobs() -> tuple[Grant, ...]:
    """Queues jobs (a publish the work queue captures) under each tenant's
    own durable consumer, made on its first job with the tenant's ack limit,
    lists those consumers for the ones with work, takes from them and acks.
    A permission's ``*`` stands for a whole token, not the tail of a name
    (``jobs-*`` would be literal), and the durable's create names no filter
    (``add_consumer``): so any consumer is granted, on this stream alone,
    which holds only jobs, and only the ingress runs them."""
    stream = subjects.JOBS_STREAM
    family = "*"
    publish = (
        f"{subjects.JOB_QUEUE}.>",
        f"{API}.CONSUMER.DURABLE.CREATE.{stream}.{family}",
        f"{API}.CONSUMER.LIST.{stream}",
        f"{API}.CONSUMER.MSG.NEXT.{stream}.{family}",
        f"$JS.ACK.{stream}.{family}.>",
    )
    return (Grant("runs jobs of", f"{stream} ({family})", publish),)


def runs_batches() -> tuple[Grant, ...]:
    """Queues a batch's lines on the jobs stream (under the tenant's batch
    queue, taken as ``runs_jobs`` takes jobs), keeps each batch's record and
    each line's outcome, lists a tenant's batches and the open ones (a
    watch), and counts a batch's outcomes (an ephemeral consumer's pending
    count, never read)."""
    lines = f"KV_{subjects.KV_BATCH_LINES}"
    return (
        Grant("queues batch lines on", subjects.JOBS_STREAM, (f"{subjects.BATCH_QUEUE}.>",)),
        *writes(subjects.KV_BATCHES, subjects.KV_BATCH_LINES),
        *follows(subjects.KV_BATCHES),
        *replays(lines),
    )


# The records the admin API (in the ingress) creates, changes and deletes;
# models are seeded from the config file alone (by ``admin``).
ADMIN_API_BUCKETS = (
    subjects.KV_KEYS,
    subjects.KV_TENANTS,
    subjects.KV_SUBSCRIPTIONS,
    subjects.KV_APPROVAL_RULES,
    subjects.KV_PROMPTS,
    subjects.KV_PROMPT_VERSIONS,
    subjects.KV_MCP_SERVERS,
    subjects.KV_SERVICES,
    # The portal's people and apps (the ingress serves the portal).
    subjects.KV_USERS,
    subjects.KV_APPS,
)
# What every stage that handles an MCP call follows: the upstream servers and
# what each offers. Only the provider stage writes a catalog.
MCP_RECORDS = (subjects.KV_MCP_SERVERS, subjects.KV_MCP_CATALOG)
_ALERTS = subjects.events("alerts")

# role -> what it does with which stream or bucket. ``pipeline`` hosts several
# of these roles and takes theirs; ``admin`` (supervisor, seeding, command
# line) may do anything and is not listed.
JETSTREAM: dict[str, tuple[tuple[Grant, ...], ...]] = {
    "ingress": (
        follows(subjects.KV_MODELS, subjects.KV_KEY_USAGE, *ADMIN_API_BUCKETS),
        writes(*ADMIN_API_BUCKETS),
        runs_jobs(),
        runs_batches(),  # the Batch API: its lines are jobs, their outcomes and records in buckets
        reads_messages(subjects.JOBS_STREAM),  # whose a pending job is
        replays(subjects.JOB_REPLIES_STREAM),  # a job's replies, when it takes one over
        reads_messages(subjects.JOB_REPLIES_STREAM),  # whether a job was claimed
        writes(subjects.KV_JOB_RESULTS),
        writes(subjects.KV_RESPONSES),  # the Responses API's stored answers
        writes(subjects.KV_FILES),  # the Files API's records
        follows(subjects.KV_FILES),  # a tenant's files listed, expired ones swept (a watch)
        follows(subjects.KV_MCP_CATALOG),  # what /mcp lists
        reads(subjects.KV_MCP_CATALOG),
        writes(subjects.KV_MCP_SESSIONS),  # MCP sessions it opened, checked and ended
        writes(subjects.KV_INVITATIONS, subjects.KV_PORTAL_SESSIONS),  # the portal's one-time links and sign-ins
        counts(),  # settles what a dead provider's requests reserved; the portal's failed sign-ins
        reads_last(subjects.SPEND_STREAM, subjects.SPEND_ALL),  # the admin API's budget view
        reads_last(subjects.RATES_STREAM, f"{subjects.QUOTA}.rate.login.>"),  # sign-in failures in the window
        # Uploads and images (OBJ_MEDIA), the Files API's files (OBJ_BLOBS):
        # kept as they stream in, served, deleted.
        reads_objects(subjects.OBJ_BLOBS, subjects.OBJ_MEDIA),
        writes_objects(subjects.OBJ_BLOBS, subjects.OBJ_MEDIA),
        deletes_objects(subjects.OBJ_BLOBS, subjects.OBJ_MEDIA),
    ),
    "policy": (
        follows(
            subjects.KV_KEYS,
            subjects.KV_TENANTS,
            subjects.KV_MODELS,
            subjects.KV_SUBSCRIPTIONS,
            subjects.KV_APPROVAL_RULES,
            subjects.KV_SERVICES,
            *MCP_RECORDS,
        ),
        writes(subjects.KV_KEY_USAGE, subjects.KV_REQUEST_IDS),
        counts(),
    ),
    "redact": (follows(subjects.KV_TENANTS), counts()),
    "route": (
        follows(subjects.KV_MODELS, subjects.KV_HEALTH, subjects.KV_SERVICES, *MCP_RECORDS),
        writes(subjects.KV_HEALTH),
        counts(),
    ),
    "cache": (caches(), counts()),
    # It keeps each MCP server's catalog (listing the server at start, on its
    # announcements and at each health check).
    "provider": (
        counts(),
        follows(*MCP_RECORDS, subjects.KV_SERVICES),  # the REST services' header rules and health checks
        reads(subjects.KV_MCP_SERVERS),
        writes(subjects.KV_MCP_CATALOG),
        # Reads what a request uploaded, keeps the images it made; a write
        # it could not finish ages out with the store (no purge).
        reads_objects(subjects.OBJ_MEDIA),
        writes_objects(subjects.OBJ_MEDIA),
    ),
    # One sink replica writes at a time, the lease's holder. The sink also
    # evaluates the alert rules: their state, the webhooks' deliveries (one
    # durable per webhook), the budgets they watch.
    "sink": (
        writes(subjects.KV_SINK_LEASE),
        pulls(subjects.EVENTS_STREAM, subjects.SINK_DURABLE, subjects.EVENTS_ALL),
        pulls(subjects.EVENTS_STREAM, "*", _ALERTS),
        writes(subjects.KV_ALERTS, subjects.KV_ALERT_DELIVERIES),
        reads(subjects.KV_TENANTS, subjects.KV_KEYS),
        reads_last(subjects.SPEND_STREAM, subjects.SPEND_ALL),
    ),
}


def grants_of(role: str) -> list[Grant]:
    return [g for row in JETSTREAM.get(role, ()) for g in row]


def jetstream_publish(role: str) -> list[str]:
    """The JetStream subjects ``role`` may publish to, each once."""
    return list(dict.fromkeys(s for g in grants_of(role) for s in g.publish))
