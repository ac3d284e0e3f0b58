"""Rate-limit response headers, as OpenAI and Anthropic send them."""

from __future__ import annotations

import datetime as dt
import time

from schemas.reservation import RateState

Headers = list[tuple[bytes, bytes]]


def duration(ms: int) -> str:
    """OpenAI's reset format: "1s", "6m0s", "20ms"."""
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"


def openai(rate: RateState | None) -> Headers:
    if rate is None:
        return []
    out: Headers = []
    if rate.limit_requests:
        out += [
            (b"x-ratelimit-limit-requests", str(rate.limit_requests).encode()),
            (b"x-ratelimit-remaining-requests", str(rate.remaining_requests).encode()),
            (b"x-ratelimit-reset-requests", duration(rate.reset_requests_ms).encode()),
        ]
    if rate.limit_tokens:
        out += [
            (b"x-ratelimit-limit-tokens", str(rate.limit_tokens).encode()),
            (b"x-ratelimit-remaining-tokens", str(rate.remaining_tokens).encode()),
            (b"x-ratelimit-reset-tokens", duration(rate.reset_tokens_ms).encode()),
        ]
    return out


def _at(ms_from_now: int) -> bytes:
    when = dt.datetime.fromtimestamp(time.time() + ms_from_now / 1000, dt.UTC).replace(microsecond=0)
    return when.isoformat().replace("+00:00", "Z").encode()


def anthropic(rate: RateState | None) -> Headers:
    """Anthropic names the reset as an RFC 3339 time, not a duration."""
    if rate is None:
        return []
    out: Headers = []
    if rate.limit_requests:
        out += [
            (b"anthropic-ratelimit-requests-limit", str(rate.limit_requests).encode()),
            (b"anthropic-ratelimit-requests-remaining", str(rate.remaining_requests).encode()),
            (b"anthropic-ratelimit-requests-reset", _at(rate.reset_requests_ms)),
        ]
    if rate.limit_tokens:
        out += [
            (b"anthropic-ratelimit-tokens-limit", str(rate.limit_tokens).encode()),
            (b"anthropic-ratelimit-tokens-remaining", str(rate.remaining_tokens).encode()),
            (b"anthropic-ratelimit-tokens-reset", _at(rate.reset_tokens_ms)),
        ]
    return out
