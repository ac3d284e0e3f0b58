"""The lifecycle of every API a gateway admin publishes, without I/O:
prompt APIs and REST services published, deprecated (with a sunset date
and a successor) and retired through the admin API's own rules
(``prompt_records.with_api`` for a prompt API, ``rest_records`` for a
service version), so the portal cannot make a record the admin API would
refuse.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Literal

import msgspec

from schemas.control import ID_PATTERN
from schemas.errors import InvalidRequest, RecordConflict
from schemas.prompts import Prompt
from schemas.rest import RestService
from services import control, prompt_records, rest_records

Action = Literal["publish", "deprecate", "retire"]
ACTIONS: tuple[Action, ...] = ("publish", "deprecate", "retire")
_STATE: dict[str, Literal["published", "deprecated", "retired"]] = {
    "publish": "published",
    "deprecate": "deprecated",
    "retire": "retired",
}
# The actions each state offers: a service's rules (``rest_records``: a
# retired version stays retired, a draft is published or deleted); a prompt
# API may come back from retirement, as the admin API lets it.
SERVICE_OFFERED: dict[str, tuple[Action, ...]] = {
    "draft": ("publish",),
    "published": ("deprecate", "retire"),
    "deprecated": ("publish", "deprecate", "retire"),
    "retired": (),
}
PROMPT_OFFERED: dict[str, tuple[Action, ...]] = {**SERVICE_OFFERED, "retired": ("publish",)}


class Move(msgspec.Struct, frozen=True):
    """A move asked for on the lifecycle page. ``successor`` None: keep the record's."""

    action: Action
    successor: str | None = None
    sunset_at_ms: int = 0


def move_of(action: str, successor: str, sunset_day: str) -> Move:
    """The form's fields checked: a known action, a successor (blank: keep
    the record's), a sunset date (``YYYY-MM-DD``, midnight UTC) or none."""
    if action not in ACTIONS:
        raise InvalidRequest(f"action must be one of {', '.join(ACTIONS)}.", code="invalid_action")
    sunset_ms = 0
    if sunset_day.strip():
        try:
            day = dt.date.fromisoformat(sunset_day.strip())
        except ValueError:
            raise InvalidRequest("The sunset date is a day, YYYY-MM-DD.", code="invalid_time") from None
        sunset_ms = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)
    return Move(action=action, successor=successor.strip() or None, sunset_at_ms=sunset_ms)  # type: ignore[arg-type]


def moved_prompt(prompt: Prompt, move: Move, others: Mapping[str, Prompt], now_ms: int) -> tuple[Prompt, str]:
    """The prompt with its API moved, and the audit action."""
    control.require_api_owned(prompt.owner, "prompt", prompt.name)
    api = prompt.api
    if api is None:
        raise InvalidRequest(f"Prompt {prompt.name!r} is not published as an API.", code="not_an_api")
    if move.action not in PROMPT_OFFERED[api.state]:
        raise RecordConflict(f"API {api.slug!r} is {api.state}: it cannot be {_STATE[move.action]}.")
    successor = api.successor if move.successor is None else move.successor
    if successor and successor != api.successor:
        slugs = {p.api.slug for p in others.values() if p.api is not None and p.name != prompt.name}
        if not ID_PATTERN.fullmatch(successor) or successor not in slugs:
            raise InvalidRequest(
                f"Successor {successor[:80]!r} is no other prompt API's slug.", code="invalid_successor"
            )
    changes: dict = {"state": _STATE[move.action], "successor": successor}
    if move.action == "deprecate":
        changes["sunset_at_ms"] = move.sunset_at_ms
    return prompt_records.with_api(prompt, msgspec.structs.replace(api, **changes), others, now_ms)


def moved_service(
    service: RestService, move: Move, services: Mapping[str, RestService], now_ms: int
) -> tuple[RestService, str]:
    """The service version moved by the admin API's rules, and the audit action."""
    control.require_api_owned(service.owner, "service", service.key)
    if move.action == "publish":
        after = rest_records.published(service)
    elif move.action == "deprecate":
        after = rest_records.deprecated(service, move.sunset_at_ms, move.successor, services, now_ms)
    else:
        after = rest_records.retired(service, move.successor, services, now_ms)
    return after, rest_records.STATE_ACTIONS[after.state] if after.state != service.state else "update"
