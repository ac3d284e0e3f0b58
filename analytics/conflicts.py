"""Whether a request's row is new, a duplicate or a conflict (issue 24).

``requests`` holds one row per request and feeds the rollups' materialized
views, which count what is inserted: a second row for a request must never
reach it. A second row identical to the one stored is a duplicate (a batch
redelivered or published again): dropped, and counted. One that differs is a
conflict (the ingress recorded a 504, then the provider's billed 200 came; or
the request was processed twice): the first row stays, so the rollups count
the request once, and both versions go to ``request_conflicts`` with an
alert, so the difference is never lost without trace.

Everything here is pure: the store looks rows up and inserts, this decides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from analytics.rows import REQUEST_COLUMNS
from schemas.events import AlertEvent

CONFLICT_COLUMNS = ["request_id", "ts", "conflict_id", "detected_at", "tenant_id", "differs", "stored_row", "new_row"]
ROW_CONFLICT = "row_conflict"
_json = msgspec.json.Encoder()


class Conflict(msgspec.Struct, frozen=True):
    """A request's row as stored (the one counted) and a later one that differs."""

    stored: dict[str, Any]
    new: dict[str, Any]
    differs: list[str]

    @property
    def request_id(self) -> str:
        return self.new["request_id"]

    @property
    def conflict_id(self) -> str:
        """The new version's hash: the same conflict, redelivered, has the same id."""
        return hashlib.sha256(_json.encode(self.new)).hexdigest()[:32]


class Sorted(msgspec.Struct):
    """A batch of ``requests`` rows, sorted against what is stored."""

    fresh: list[list] = []
    duplicates: int = 0
    conflicts: list[Conflict] = []


def sort_requests(stored: Iterable[Sequence], batch: Iterable[list], columns: list[str] = REQUEST_COLUMNS) -> Sorted:
    """``stored``: the rows already in ``requests`` for the batch's ids
    (``ts`` as integer nanoseconds, as the batch has it). A row is fresh when
    its id is neither stored nor earlier in the batch; a copy of any version
    seen is a duplicate; anything else is a conflict with the first version."""
    key = columns.index("request_id")
    seen: dict[str, list[list]] = {}
    for row in stored:
        seen.setdefault(row[key], []).append(list(row))
    out = Sorted()
    for row in batch:
        versions = seen.get(row[key])
        if versions is None:
            out.fresh.append(row)
            seen[row[key]] = [row]
        elif row in versions:
            out.duplicates += 1
        else:
            first = versions[0]
            differs = [c for c, a, b in zip(columns, first, row, strict=True) if a != b]
            stored_version, new_version = dict(zip(columns, first, strict=True)), dict(zip(columns, row, strict=True))
            out.conflicts.append(Conflict(stored_version, new_version, differs))
            # A second copy of this version in the same pull is a duplicate, not another conflict.
            versions.append(row)
    return out


def conflict_row(c: Conflict, detected_at_ns: int) -> list:
    return [
        c.request_id,
        c.new["ts"],
        c.conflict_id,
        detected_at_ns,
        c.new.get("tenant_id", ""),
        c.differs,
        _json.encode(c.stored).decode(),
        _json.encode(c.new).decode(),
    ]


def describe(c: Conflict, limit: int = 1000) -> str:
    """What differs, stored value first: ``status 504 -> 200, cost_pico_usd 0 -> 1200``."""
    changes = ", ".join(f"{name} {c.stored[name]!r} -> {c.new[name]!r}" for name in c.differs)
    return f"request {c.request_id} came again with another row: {changes}"[:limit]


def alert_for(c: Conflict, at_ns: int) -> AlertEvent:
    return AlertEvent(
        # From the conflict's id: stored again after a redelivery, it replaces itself.
        event_id=f"conflict-{c.conflict_id}",
        request_id=c.request_id,
        at_ns=at_ns,
        alert=ROW_CONFLICT,
        model=str(c.new.get("model", "")),
        deployment=str(c.new.get("deployment", "")),
        detail=describe(c),
    )
