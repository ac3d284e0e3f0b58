"""What a caller may say about its own request, and what the gateway sets.

Every field of an envelope that arrives on the bus comes from someone: from
the gateway's own ingress (trusted: it stamped them itself), or from an
internal service publishing straight to NATS (hostile until checked). Times,
ids, origin and the reply subject decide what is recorded and where the
gateway publishes, so none of them is taken on a caller's word.
"""

from __future__ import annotations

import re

from schemas.envelope import Envelope
from schemas.errors import InvalidRequest, RequestIdReused
from schemas.ids import new_id
from schemas.tasks import TranscriptionRequest
from services import task_policy
from services.recent import RecentSet

# A caller-chosen id is kept only if it is ours in shape (26 Crockford base32
# characters) and was made within this window of now: an id outside it cannot
# be checked against the ids seen, so it is replaced.
ID_WINDOW_NS = 10 * 60 * 1_000_000_000
# Ids seen within the window; past this count the oldest are forgotten first
# (a burst of more fresh ids than this could reuse one: the id is replaced,
# never trusted, when in doubt, so only the caller's own correlation suffers).
SEEN_IDS_MAX = 200_000
_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# Replies go to inboxes only: a caller must not make a stage publish its
# answer onto a stage or event subject on its behalf.
INBOX_PREFIX = "_INBOX."
_SUBJECT_TOKEN = re.compile(r"[^\s*>.]+")


def id_time_ms(request_id: str) -> int:
    """The millisecond timestamp in the first 10 characters of one of our ids."""
    value = 0
    for ch in request_id[:10]:
        value = value * 32 + _CROCKFORD.index(ch)
    return value >> 2  # 10 characters hold 50 bits; the time is the first 48


class RecentIds:
    """The request ids a policy process admitted lately, to refuse a reuse."""

    def __init__(self, window_ns: int = ID_WINDOW_NS, max_size: int = SEEN_IDS_MAX) -> None:
        self._window_ns = window_ns
        self._seen = RecentSet(window_ns, max_size)

    def checkable(self, request_id: str, now_ns: int) -> bool:
        """Ours in shape and made within the window: a reuse of it can be told."""
        return bool(_ID.fullmatch(request_id)) and abs(id_time_ms(request_id) * 1_000_000 - now_ns) <= self._window_ns

    def admit(self, request_id: str, now_ns: int) -> bool:
        """True the first time a fresh, well-formed id is seen; False otherwise."""
        return self.checkable(request_id, now_ns) and self._seen.add(request_id, now_ns)


def valid_reply_subject(subject: str) -> bool:
    if not subject.startswith(INBOX_PREFIX) or len(subject) > 256:
        return False
    return all(_SUBJECT_TOKEN.fullmatch(token) for token in subject.split("."))


def admit(
    env: Envelope, now_ns: int, timeout_s: float, *, from_ingress: bool, ids: RecentIds, nats_reply: str = ""
) -> bool:
    """Set what the gateway decides about a request that just reached policy.

    From the ingress, the id, arrival and deadline are its own; from anyone
    else, origin and arrival are set here, the deadline is kept only within the
    gateway's timeout, and an id is kept only if well-formed and fresh (else
    it is replaced). An envelope whose ``reply`` is no inbox is refused,
    answered on the NATS message's own reply subject if that one is an inbox,
    else not at all. An id this process saw before is refused (409) under a
    new id of its own, so the refusal's row never stands for the first request.

    True when the request keeps an id its caller chose: the caller of
    ``admit`` then claims it cluster-wide (``refuse_reused``), since another
    policy replica may have seen it.
    """
    timeout_ns = int(timeout_s * 1e9)
    # Routing's to decide, from the gateway's own records: a caller's
    # candidates could send the request (and its prompt) to any URL.
    env.group, env.candidates, env.context_candidates, env.arm, env.retries = "", [], [], "", 0
    env.cache_ttl_s, env.cache_lookup, env.cache_key = 0, False, ""
    # Policy's, from the tenant's own setting: a caller could name a lax
    # moderation, or mark its request checked.
    env.moderation = None
    if from_ingress:
        # A batch's lines run as the ingress's durable jobs, and only those.
        if env.origin != "job":
            env.batch_id = ""
        # The ingress's own prompt APIs also serve NATS callers: it says which.
        if not env.id:
            env.id = new_id(now_ns)
        if not 0 < env.received_at_ns <= now_ns:
            env.received_at_ns = now_ns
        if not env.received_at_ns < env.deadline_ns <= env.received_at_ns + timeout_ns:
            env.deadline_ns = env.received_at_ns + timeout_ns
        return False
    env.origin = "nats"
    # Only the gateway's sessions send a request again (the fence protocol).
    env.copy = 0
    # Only the gateway's prompt APIs say which prompt made a request.
    env.prompt = None
    # Only the gateway's job runner says which batch a request is a line of.
    env.batch_id = ""
    # A bus caller's unified body is its whole request: nothing was left out.
    env.dropped = []
    if not valid_reply_subject(env.reply):
        env.reply = nats_reply if valid_reply_subject(nats_reply) else ""
        env.id = new_id(now_ns)
        env.received_at_ns, env.deadline_ns = now_ns, now_ns + timeout_ns
        raise InvalidRequest(f"'reply' must be an inbox subject ({INBOX_PREFIX}...), without wildcards.")
    own_id = ids.checkable(env.id, now_ns)
    if not own_id:
        env.id = new_id(now_ns)
    env.received_at_ns = now_ns
    env.spans = []
    # Policy checks the unified body; only the ingress's own copy of the
    # client's bytes is known to say the same.
    env.raw = b""
    latest = now_ns + timeout_ns
    env.deadline_ns = latest if not env.deadline_ns else min(max(env.deadline_ns, now_ns), latest)
    # The body says which kind of request it is; of a chat request, ``api``
    # says in which client API's shape it came (its row's ``api``), or that
    # it asks for a count of its input tokens ("count_tokens"), not an answer.
    if env.embeddings is not None:
        env.api = "embeddings"
    elif env.task is not None:
        env.api = task_policy.api_of(env.task)
        # What the ingress read of the audio's length from its header: a
        # caller's word for it would shrink what its budget reserves.
        if isinstance(env.task, TranscriptionRequest):
            env.task.duration_ms = 0
    elif env.tool is not None:
        env.api = "mcp"
    elif env.rest is not None:
        env.api = "rest"
    elif env.api not in ("messages", "responses", "count_tokens"):
        env.api = "chat"
    if own_id and not ids.admit(env.id, now_ns):
        refuse_reused(env, now_ns)
    return own_id


def refuse_reused(env: Envelope, now_ns: int) -> None:
    """Refuse a request whose caller-chosen id was used before."""
    reused, env.id = env.id, new_id(now_ns)
    raise RequestIdReused(f"The request id {reused!r} was used before; a request id names one request.")
