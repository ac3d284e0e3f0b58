"""The lifecycle of every API a gateway admin publishes, without I/O:
prompt APIs and REST services moved between draft, published, deprecated
(with a sunset date and a successor) and retired, through the same checks
as the admin API (``prompt_records.with_api`` for a prompt API,
``rest_config.problem`` and ``deprecated_since`` for a service), so the
portal cannot make a record the admin API would refuse.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Literal

import msgspec

from schemas.control import ID_PATTERN
from schemas.errors import InvalidRequest
from schemas.prompts import Prompt
from schemas.rest import RestService
from services import control, prompt_records, rest_config

State = Literal["draft", "published", "deprecated", "retired"]
STATES: tuple[State, ...] = ("draft", "published", "deprecated", "retired")


class Change(msgspec.Struct, frozen=True):
    """A move asked for on the lifecycle page."""

    state: State
    successor: str = ""
    sunset_at_ms: int = 0


def change_of(state: str, successor: str, sunset_day: str) -> Change:
    """The form's fields checked: a known state, a successor name of plain
    characters, a sunset date (``YYYY-MM-DD``, midnight UTC) or none. A
    successor and sunset belong to a deprecated or retired API only."""
    if state not in STATES:
        raise InvalidRequest(f"state must be one of {', '.join(STATES)}.", code="invalid_state")
    successor = successor.strip()
    sunset_ms = 0
    if sunset_day.strip():
        try:
            day = dt.date.fromisoformat(sunset_day.strip())
        except ValueError:
            raise InvalidRequest("The sunset date is a day, YYYY-MM-DD.", code="invalid_time") from None
        sunset_ms = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)
    if state in ("draft", "published"):
        successor, sunset_ms = "", 0
    return Change(state=state, successor=successor, sunset_at_ms=sunset_ms)  # type: ignore[arg-type]


def action_of(before: str, after: str) -> str:
    """The audit action of a move (``publish``, ``deprecate``...), "update" when the state stays."""
    return prompt_records.STATE_ACTIONS[after] if before != after else "update"


def moved_prompt(prompt: Prompt, change: Change, others: Mapping[str, Prompt], now_ms: int) -> tuple[Prompt, str]:
    """The prompt with its API moved, and the audit action."""
    control.require_api_owned(prompt.owner, "prompt", prompt.name)
    if prompt.api is None:
        raise InvalidRequest(f"Prompt {prompt.name!r} is not published as an API.", code="not_an_api")
    if change.successor:
        if not ID_PATTERN.fullmatch(change.successor):
            raise InvalidRequest("The successor is another prompt API's slug.", code="invalid_successor")
        if change.successor == prompt.api.slug:
            raise InvalidRequest("The successor is another API, not this one.", code="invalid_successor")
    api = msgspec.structs.replace(
        prompt.api, state=change.state, successor=change.successor, sunset_at_ms=change.sunset_at_ms
    )
    if change.state in ("draft", "published"):
        api = msgspec.structs.replace(api, deprecated_at_ms=0)
    return prompt_records.with_api(prompt, api, others, now_ms)


def moved_service(service: RestService, change: Change, now_ms: int) -> tuple[RestService, str]:
    """The service version moved, and the audit action."""
    control.require_api_owned(service.owner, "service", service.key)
    after = msgspec.structs.replace(
        service, state=change.state, successor=change.successor, sunset_at_ms=change.sunset_at_ms
    )
    if change.state in ("draft", "published"):
        after = msgspec.structs.replace(after, deprecated_at_ms=0)
    after = msgspec.structs.replace(after, deprecated_at_ms=rest_config.deprecated_since(after, service, now_ms))
    if problem := rest_config.problem(after):
        raise InvalidRequest(problem, code="invalid_service")
    return after, action_of(service.state, after.state)
