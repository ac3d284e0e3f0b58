"""Who may say what on the bus: one NATS user per process role, each allowed
only the subjects its job needs, and users for internal services that may
only send requests in and read their own inbox. What a role may do with
JetStream (which streams, consumers and buckets) is the table in
``jetstream_grants``: no role but ``admin`` may purge or delete anything.

The embedded nats-server enforces these (``authorization`` in its config);
a publish outside a user's permissions is refused by the server, not by us.
Credentials live under ``<home>/creds/`` (one JSON file per user, mode 600)
and are kept across restarts; the server's user list is written from them at
each start, and reloaded when a service user is added.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import msgspec

from schemas import subjects
from schemas.envelope import WORKER_STAGES
from services.bus.jetstream_grants import jetstream_publish

_LIFE = [f"{subjects.CONTROL_READY}.*", f"{subjects.CONTROL_HEARTBEAT}.*"]
_STAGES = f"{subjects.PREFIX}.stage.>"
_INBOXES = "_INBOX.>"
_EVENTS = subjects.events("")
SERVICE_PREFIX = "svc-"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,40}")


class Permissions(msgspec.Struct):
    publish: list[str]
    subscribe: list[str]


class Credentials(msgspec.Struct):
    """What a process or service needs to connect as one user."""

    user: str
    password: str
    # Replies to this user go under this prefix, the only inbox it may read.
    inbox_prefix: str
    url: str = ""


def _stage(name: str, *publish: str, subscribe: list[str]) -> Permissions:
    return Permissions(
        publish=[*publish, subjects.events(name), *jetstream_publish(name), *_LIFE],
        subscribe=[f"_INBOX.{name}.>", *subscribe],
    )


def _hosting(name: str, *roles: str) -> Permissions:
    """A process hosting several stages: what each of them may, but under
    its own name (its inbox, its events subject)."""
    own = _stage(name, subscribe=[])
    publish = [s for r in roles for s in ROLES[r].publish if not s.startswith(_EVENTS)]
    subscribe = [s for r in roles for s in ROLES[r].subscribe if not s.startswith("_INBOX.")]
    return Permissions(
        publish=list(dict.fromkeys([*own.publish, *publish])),
        subscribe=list(dict.fromkeys([*own.subscribe, *subscribe])),
    )


# Stage replicas share their role: "provider-1" connects as "provider".
ROLES: dict[str, Permissions] = {
    # The admin API runs in the ingress: it writes control records.
    "ingress": _stage(
        "ingress",
        subjects.FROM_INGRESS,
        subjects.CONTROL_CANCEL,
        subjects.CONTROL_REPLAY,
        subjects.CONTROL_CREDIT,  # paces REST answers to what its clients take
        subjects.ANALYTICS_QUERY,  # the admin API's usage view
        _INBOXES,  # answers to prompt APIs called over the bus, and jobs' claims
        subjects.CONTROL_FENCE,  # asks every provider before it sends a request again
        subjects.CONTROL_JOBS,  # tells every runner a tenant has jobs
        subscribe=[
            subjects.CONTROL_DIED,
            f"{subjects.CONTROL_READY}.*",
            f"{subjects.CONTROL_HEARTBEAT}.*",  # which stages are up (/readyz)
            subjects.IN_API_ALL,
            # The Responses API, images, moderations and rerank for services.
            *(subjects.in_client_api(name) for name in subjects.CLIENT_APIS_ON_THE_BUS),
            subjects.IN_MCP,  # MCP's JSON-RPC for services
            f"{subjects.JOBS}.>",  # jobs coming in (the ingress queues them)
            subjects.CONTROL_JOBS,
            subjects.JOBS_RESULT,
            f"{subjects.JOB_REPLIES}.*",
        ],
    ),
    "policy": _stage(
        "policy",
        _STAGES,
        _INBOXES,
        # Fences: a copy sent again is admitted once (``workers.policy``).
        subscribe=[subjects.IN_CHAT, subjects.FROM_INGRESS, subjects.CONTROL_FENCE],
    ),
    "redact": _stage("redact", _STAGES, _INBOXES, subscribe=[subjects.STAGE_REDACT]),
    "route": _stage(
        "route",
        _STAGES,
        _INBOXES,
        subscribe=[subjects.STAGE_ROUTE, subjects.HEALTH_ATTEMPT],
    ),
    "cache": _stage(
        "cache",
        _STAGES,
        _INBOXES,
        subscribe=[subjects.STAGE_CACHE, subjects.CACHE_STORE],
    ),
    "provider": _stage(
        "provider",
        _INBOXES,
        subjects.HEALTH_ATTEMPT,
        subjects.CACHE_STORE,
        subscribe=[
            subjects.STAGE_CALL,
            subjects.CONTROL_CANCEL,
            subjects.CONTROL_REPLAY,
            subjects.CONTROL_FENCE,
            subjects.CONTROL_CREDIT,
            subjects.IN_CANCEL,
            subjects.IN_CREDIT,
        ],
    ),
    # It also evaluates the alert rules: their state, events and deliveries.
    "sink": _stage(
        "sink",
        _INBOXES,
        subjects.DEAD_LETTER,
        subjects.events("alerts"),
        subscribe=[subjects.ANALYTICS_QUERY, subjects.ANALYTICS_RECOST],
    ),
    # The supervisor and the command line: seeding, queries, process news.
    "admin": Permissions(publish=[">"], subscribe=[">"]),
}
# Stages hosted together in one process (``workers.pipeline``): any of the
# worker stages (each must have its role above).
ROLES["pipeline"] = _hosting("pipeline", *WORKER_STAGES)


def service_permissions(name: str) -> Permissions:
    """An internal service: requests in, answers on its own inbox, nothing else."""
    return Permissions(publish=[f"{subjects.PREFIX}.in.>", f"{subjects.JOBS}.>"], subscribe=[f"_INBOX.svc.{name}.>"])


def role_of(process_name: str) -> str:
    """``provider-1`` -> ``provider``."""
    base, _, replica = process_name.rpartition("-")
    return base if base in ROLES and replica.isdigit() else process_name


def path_of(home: Path, user: str) -> Path:
    return home / "creds" / f"{user}.json"


def _write(path: Path, creds: Credentials) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(msgspec.json.encode(creds).decode() + "\n")


def load(path: str | Path) -> Credentials:
    return msgspec.json.decode(Path(path).read_bytes(), type=Credentials)


def ensure(home: Path, user: str, url: str) -> Credentials:
    """The user's credentials, made (and kept) the first time they are asked for."""
    path = path_of(home, user)
    if path.exists():
        creds = load(path)
        if creds.url != url:  # the same user on another port this time
            creds.url = url
            _write(path, creds)
        return creds
    prefix = f"_INBOX.svc.{user.removeprefix(SERVICE_PREFIX)}" if user.startswith(SERVICE_PREFIX) else f"_INBOX.{user}"
    creds = Credentials(user=user, password=secrets.token_urlsafe(24), inbox_prefix=prefix, url=url)
    _write(path, creds)
    return creds


def service_user(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"service name {name!r}: use lower-case letters, digits and dashes (up to 41)")
    return SERVICE_PREFIX + name


def users(home: Path) -> dict[str, Credentials]:
    """Every user with credentials under ``home``."""
    folder = home / "creds"
    return {p.stem: load(p) for p in sorted(folder.glob("*.json"))} if folder.exists() else {}


def permissions_of(user: str) -> Permissions:
    if user.startswith(SERVICE_PREFIX):
        return service_permissions(user.removeprefix(SERVICE_PREFIX))
    return ROLES[user]


def server_block(all_users: dict[str, Credentials]) -> str:
    """The ``authorization`` block of nats-server's config for these users
    (JSON is valid in nats-server's config syntax)."""
    entries = [
        {
            "user": c.user,
            "password": c.password,
            "permissions": {
                "publish": {"allow": permissions_of(name).publish},
                "subscribe": {"allow": permissions_of(name).subscribe},
            },
        }
        for name, c in all_users.items()
    ]
    return "authorization " + json.dumps({"users": entries}, indent=2)
