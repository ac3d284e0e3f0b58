"""W3C trace context (``traceparent``): a caller's trace id, recorded on its
requests' rows so a trace in the caller's own system finds them.

Only a well-formed header is taken (version 00 and later, lower-case hex,
neither id all zeros); anything else is ignored, as the spec asks of a
receiver, and never refused.
"""

from __future__ import annotations

import re

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?")


def parse(traceparent: str | None) -> tuple[str, str]:
    """(trace id, the caller's span id) of a valid ``traceparent``, else ("", "")."""
    if not traceparent or len(traceparent) > 512:
        return "", ""
    m = _TRACEPARENT.fullmatch(traceparent.strip())
    if m is None:
        return "", ""
    version, trace, parent, _flags = m.groups()
    if version == "ff" or trace == "0" * 32 or parent == "0" * 16:
        return "", ""
    # Version 00 has exactly four fields; later versions may append more.
    if version == "00" and len(traceparent.strip()) != 55:
        return "", ""
    return trace, parent


def trace_id(traceparent: str | None) -> str:
    """The trace id of a valid ``traceparent``, else ""."""
    return parse(traceparent)[0]
