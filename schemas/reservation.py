"""What policy reserved for a request, and the rate-limit state callers see.

Policy admits a request by taking units from shared counters (requests,
tokens, parallel slots, spend); the ``Reservation`` rides in the envelope so
that whichever process ends the request settles it: tokens and spend to what
was really used, the parallel slot given back.
"""

from __future__ import annotations

import msgspec

HOLD_REQUESTS = 0
HOLD_TOKENS = 1
HOLD_PARALLEL = 2
HOLD_SPEND = 3


class Hold(msgspec.Struct, array_like=True):
    """``amount`` units taken from the counter at ``subject``, whose limit is ``limit``."""

    subject: str
    kind: int
    amount: int
    limit: int


class RateState(msgspec.Struct):
    """OpenAI's ``x-ratelimit-*`` values for the calling key (or, when the key
    has none, its tenant): limit, remaining, and ms until the window resets."""

    limit_requests: int = 0
    remaining_requests: int = 0
    reset_requests_ms: int = 0
    limit_tokens: int = 0
    remaining_tokens: int = 0
    reset_tokens_ms: int = 0


class Reservation(msgspec.Struct, omit_defaults=True):
    """One admission. A copy of the request that the ingress sends again
    carries the same reservation, so it is admitted and settled once."""

    holds: list[Hold] = []
    rate: RateState | None = None
    # The copy of the request policy admitted: a copy sent again before its
    # requester heard of the first one's admission is admitted afresh, and
    # the fence then says which of the two goes on (``Fence.carries``).
    copy: int = 0
