"""The portal's usage page: what the query is asked for each person, and
the rollup's hours summed per API and per day with exact spend."""

from __future__ import annotations

import pytest

from analytics.queries import NAMED
from schemas.errors import InvalidRequest
from services.portal_scope import Who
from services.portal_usage import (
    NS_PER_DAY,
    QUERY,
    chart_data,
    days_of,
    query_params,
    summarize,
    usd,
)

DEV = Who(user_id="u1", role="developer", tenant_id="acme")
ADMIN = Who(user_id="u2", role="tenant_admin", tenant_id="acme")
ROOT = Who(user_id="u3", role="gateway_admin")
NOW = 100 * NS_PER_DAY + 5


def test_the_named_query_takes_every_parameter_the_page_sends() -> None:
    for who in (DEV, ADMIN, ROOT):
        params = query_params(who, ["k1"], 7, NOW)
        assert params is not None and set(params) <= set(NAMED[QUERY].params)


def test_a_developer_is_narrowed_to_their_keys_an_admin_to_the_tenant() -> None:
    assert query_params(DEV, ["k1", "k2"], 7, NOW) == {
        "since_ns": 93 * NS_PER_DAY,
        "tenant_id": "acme",
        "key_ids": "k1,k2",
    }
    assert query_params(ADMIN, [], 7, NOW) == {"since_ns": 93 * NS_PER_DAY, "tenant_id": "acme", "key_ids": ""}
    assert query_params(ROOT, [], 7, NOW) == {"since_ns": 93 * NS_PER_DAY, "tenant_id": "", "key_ids": ""}
    # No keys: nothing is asked (an empty key_ids would mean all of the tenant's).
    assert query_params(DEV, [], 7, NOW) is None
    with pytest.raises(InvalidRequest):
        query_params(DEV, [f"k{i}" for i in range(1001)], 7, NOW)


@pytest.mark.parametrize("value", ["0", "91", "-1", "7d", "1e3", " 7"])
def test_days_is_a_bounded_whole_number(value: str) -> None:
    with pytest.raises(InvalidRequest):
        days_of(value)


def test_days_default_and_range() -> None:
    assert days_of(None) == days_of("") == 30 and days_of("90") == 90 and days_of("1") == 1


COLUMNS = ["hour", "model", "requests", "errors", "prompt_tokens", "completion_tokens", "cost_pico_usd", "cache_hits"]


def test_hours_are_summed_per_api_and_day_with_exact_spend() -> None:
    rows = [
        ["2026-03-01T10:00:00", "demo-model", 3, 1, 10, 5, "1000000000001", 0],
        ["2026-03-01T11:00:00+00:00", "demo-model", 2, 0, 4, 4, "2", 0],
        ["2026-03-01T11:00:00", "service:echo", 1, 0, 0, 0, "0", 0],
        [1772496000, "demo-model", 1, 1, 1, 1, "7", 0],  # 2026-03-03 as seconds
    ]
    usage = summarize(COLUMNS, rows)
    assert usage.days == ["2026-03-01", "2026-03-03"]
    first = next(line for line in usage.daily if (line.day, line.api) == ("2026-03-01", "demo-model"))
    assert (first.requests, first.errors, first.tokens, first.cost_pico_usd) == (5, 1, 23, 1000000000003)
    assert first.cost_usd == "1.000000000003"
    assert [line.api for line in usage.per_api] == ["demo-model", "service:echo"]
    assert (usage.total.requests, usage.total.errors, usage.total.cost_pico_usd) == (7, 2, 1000000000010)
    chart = chart_data(usage)
    assert chart["days"] == usage.days
    demo = chart["series"][0]
    assert demo["api"] == "demo-model" and demo["requests"] == [5, 1] and demo["errors"] == [1, 1]
    assert chart["series"][1]["requests"] == [1, 0]


def test_no_rows_is_an_empty_page_not_an_error() -> None:
    usage = summarize(COLUMNS, [])
    assert usage.days == [] and usage.total.requests == 0 and chart_data(usage) == {"days": [], "series": []}


def test_usd_is_exact() -> None:
    assert usd(1) == "0.000000000001" and usd(0) == "0" and usd(2_500_000_000_000) == "2.5"
