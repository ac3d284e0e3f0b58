"""The lifecycle page's moves: the admin API's own checks for prompt APIs
and REST services, dates kept as callers' headers need them."""

from __future__ import annotations

import pytest

from schemas.errors import InvalidRequest, RecordConflict
from schemas.prompts import Prompt, PromptApi
from schemas.rest import RestInstance, RestService
from services.portal_lifecycle import change_of, moved_prompt, moved_service

DAY = 86_400_000


def prompt(state: str = "published", owner: str = "api") -> Prompt:
    api = PromptApi(slug="summarize", state=state)  # type: ignore[arg-type]
    return Prompt(name="summary", latest=1, labels={"production": 1}, api=api, owner=owner)  # type: ignore[arg-type]


def service(state: str = "published", owner: str = "api") -> RestService:
    return RestService(
        slug="billing",
        instances=[RestInstance(url="http://127.0.0.1:9000/api")],
        state=state,  # type: ignore[arg-type]
        owner=owner,  # type: ignore[arg-type]
    )


def test_a_change_is_checked_and_a_published_api_has_no_sunset() -> None:
    change = change_of("deprecated", " summarize-v2 ", "2030-01-31")
    assert (change.state, change.successor, change.sunset_at_ms) == ("deprecated", "summarize-v2", 1896048000000)
    assert change_of("published", "x", "2030-01-31").successor == ""
    assert change_of("published", "x", "2030-01-31").sunset_at_ms == 0
    with pytest.raises(InvalidRequest):
        change_of("gone", "", "")
    with pytest.raises(InvalidRequest):
        change_of("deprecated", "", "31/01/2030")


def test_a_prompt_api_is_deprecated_with_its_date_kept_then_retired() -> None:
    p, action = moved_prompt(prompt(), change_of("deprecated", "summarize-v2", "2030-01-31"), {}, 5 * DAY)
    assert action == "deprecate" and p.api is not None
    assert (p.api.state, p.api.successor, p.api.deprecated_at_ms) == ("deprecated", "summarize-v2", 5 * DAY)
    retired, action = moved_prompt(p, change_of("retired", "summarize-v2", "2030-01-31"), {}, 9 * DAY)
    assert action == "retire" and retired.api is not None and retired.api.deprecated_at_ms == 5 * DAY
    back, action = moved_prompt(retired, change_of("published", "", ""), {}, 10 * DAY)
    assert action == "publish" and back.api is not None and back.api.deprecated_at_ms == 0


def test_a_prompt_api_move_is_refused_as_the_admin_api_refuses_it() -> None:
    with pytest.raises(RecordConflict):
        moved_prompt(prompt(owner="config"), change_of("retired", "", ""), {}, 1)
    with pytest.raises(InvalidRequest):
        moved_prompt(prompt(), change_of("deprecated", "summarize", ""), {}, 1)
    with pytest.raises(InvalidRequest):
        moved_prompt(prompt(), change_of("deprecated", "../x", ""), {}, 1)
    with pytest.raises(InvalidRequest):
        moved_prompt(Prompt(name="bare", owner="api"), change_of("published", "", ""), {}, 1)


def test_a_service_is_deprecated_and_retired_through_the_config_checks() -> None:
    s, action = moved_service(service(), change_of("deprecated", "billing/v2", "2030-01-31"), 3 * DAY)
    assert action == "deprecate" and (s.state, s.successor, s.deprecated_at_ms) == ("deprecated", "billing/v2", 3 * DAY)
    r, action = moved_service(s, change_of("retired", "billing/v2", ""), 4 * DAY)
    assert action == "retire" and r.deprecated_at_ms == 3 * DAY and r.sunset_at_ms == 0
    same, action = moved_service(r, change_of("retired", "billing-next", ""), 5 * DAY)
    assert action == "update" and same.successor == "billing-next"
    with pytest.raises(InvalidRequest):
        moved_service(service(), change_of("deprecated", "Not A Slug!", ""), 1)
    with pytest.raises(InvalidRequest):
        moved_service(service(), change_of("deprecated", "billing", ""), 1)
    with pytest.raises(RecordConflict):
        moved_service(service(owner="config"), change_of("retired", "", ""), 1)
