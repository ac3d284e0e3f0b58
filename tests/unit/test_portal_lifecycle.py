"""The lifecycle page's moves: the admin API's own rules for prompt APIs
(prompt_records) and REST services (rest_records), dates kept as callers'
headers need them."""

from __future__ import annotations

import pytest

from schemas.errors import InvalidRequest, RecordConflict
from schemas.prompts import Prompt, PromptApi
from schemas.rest import RestInstance, RestService
from services.portal_lifecycle import PROMPT_OFFERED, SERVICE_OFFERED, move_of, moved_prompt, moved_service

DAY = 86_400_000
SUNSET_2030_01_31 = 1896048000000


def prompt(state: str = "published", owner: str = "api", slug: str = "summarize", name: str = "summary") -> Prompt:
    api = PromptApi(slug=slug, state=state)  # type: ignore[arg-type]
    return Prompt(name=name, latest=1, labels={"production": 1}, api=api, owner=owner)  # type: ignore[arg-type]


def service(slug: str = "billing", version: int = 1, state: str = "published", owner: str = "api") -> RestService:
    return RestService(
        slug=slug,
        version=version,
        instances=[RestInstance(url="http://127.0.0.1:9000/api")],
        state=state,  # type: ignore[arg-type]
        owner=owner,  # type: ignore[arg-type]
    )


NEXT = prompt(slug="summarize-v2", name="summary2")
OTHERS = {"summary2": NEXT}


def test_a_move_is_checked() -> None:
    move = move_of("deprecate", " summarize-v2 ", "2030-01-31")
    assert (move.action, move.successor, move.sunset_at_ms) == ("deprecate", "summarize-v2", SUNSET_2030_01_31)
    assert move_of("retire", "  ", "").successor is None  # blank: keep the record's
    with pytest.raises(InvalidRequest):
        move_of("delete", "", "")
    with pytest.raises(InvalidRequest):
        move_of("deprecate", "", "31/01/2030")


def test_a_prompt_api_is_deprecated_with_its_date_kept_then_retired_and_published_again() -> None:
    p, action = moved_prompt(prompt(), move_of("deprecate", "summarize-v2", "2030-01-31"), OTHERS, 5 * DAY)
    assert action == "deprecate" and p.api is not None
    assert (p.api.state, p.api.successor, p.api.sunset_at_ms) == ("deprecated", "summarize-v2", SUNSET_2030_01_31)
    assert p.api.deprecated_at_ms == 5 * DAY
    retired, action = moved_prompt(p, move_of("retire", "", ""), OTHERS, 9 * DAY)
    assert action == "retire" and retired.api is not None
    assert (retired.api.deprecated_at_ms, retired.api.successor) == (5 * DAY, "summarize-v2")
    back, action = moved_prompt(retired, move_of("publish", "", ""), OTHERS, 10 * DAY)
    assert action == "publish" and back.api is not None and back.api.state == "published"


def test_a_prompt_api_move_is_refused_as_the_admin_api_refuses_it() -> None:
    with pytest.raises(RecordConflict):
        moved_prompt(prompt(owner="config"), move_of("retire", "", ""), OTHERS, 1)
    with pytest.raises(InvalidRequest):  # itself, or no API's slug
        moved_prompt(prompt(), move_of("deprecate", "summarize", ""), OTHERS, 1)
    with pytest.raises(InvalidRequest):
        moved_prompt(prompt(), move_of("deprecate", "../x", ""), OTHERS, 1)
    with pytest.raises(InvalidRequest):
        moved_prompt(Prompt(name="bare", owner="api"), move_of("publish", "", ""), {}, 1)
    with pytest.raises(RecordConflict):  # a draft is published first
        moved_prompt(prompt(state="draft"), move_of("retire", "", ""), OTHERS, 1)


def test_a_service_moves_by_the_admin_apis_rules() -> None:
    services = {"billing.v1": service(), "billing.v2": service(version=2)}
    s, action = moved_service(service(), move_of("deprecate", "billing/v2", "2030-01-31"), services, 3 * DAY)
    assert action == "deprecate" and (s.state, s.successor, s.deprecated_at_ms) == ("deprecated", "billing/v2", 3 * DAY)
    assert s.sunset_at_ms == SUNSET_2030_01_31
    again, action = moved_service(s, move_of("deprecate", "", "2031-01-31"), services, 4 * DAY)
    assert action == "update" and again.deprecated_at_ms == 3 * DAY and again.successor == "billing/v2"
    r, action = moved_service(s, move_of("retire", "", ""), services, 5 * DAY)
    assert action == "retire" and r.deprecated_at_ms == 3 * DAY
    with pytest.raises(RecordConflict):  # retired stays retired
        moved_service(r, move_of("publish", "", ""), services, 6 * DAY)
    with pytest.raises(InvalidRequest):  # a successor that is not registered
        moved_service(service(), move_of("deprecate", "billing/v9", ""), services, 1)
    with pytest.raises(RecordConflict):  # from the config file: changed there
        moved_service(service(owner="config"), move_of("retire", "", ""), services, 1)


def test_the_page_offers_what_the_rules_allow() -> None:
    assert SERVICE_OFFERED["retired"] == () and PROMPT_OFFERED["retired"] == ("publish",)
    assert "retire" not in SERVICE_OFFERED["draft"]
