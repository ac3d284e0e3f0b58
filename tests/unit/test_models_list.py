"""GET /v1/models in Anthropic's list shape (``ingress.models.anthropic_page``):
pages by ``limit``, ``after_id`` and ``before_id``, as the anthropic SDK's
paginator and Claude Code's gateway model discovery read them."""

from __future__ import annotations

import pytest

from ingress.models import anthropic_page, speaks_anthropic
from schemas.errors import InvalidRequest

NAMES = [f"model-{i:02d}" for i in range(25)]


def ids(page: dict) -> list[str]:
    return [m["id"] for m in page["data"]]


def test_twenty_unless_asked_each_an_anthropic_model() -> None:
    page = anthropic_page(NAMES, {})
    assert ids(page) == NAMES[:20] and page["has_more"] is True
    assert (page["first_id"], page["last_id"]) == ("model-00", "model-19")
    assert page["data"][0] == {
        "type": "model",
        "id": "model-00",
        "display_name": "model-00",
        "created_at": "1970-01-01T00:00:00Z",
    }


def test_pages_follow_after_id_and_before_id() -> None:
    first = anthropic_page(NAMES, {"limit": "10"})
    second = anthropic_page(NAMES, {"limit": "10", "after_id": first["last_id"]})
    third = anthropic_page(NAMES, {"limit": "10", "after_id": second["last_id"]})
    assert ids(first) + ids(second) + ids(third) == NAMES
    assert (first["has_more"], second["has_more"], third["has_more"]) == (True, True, False)
    back = anthropic_page(NAMES, {"limit": "10", "before_id": third["first_id"]})
    assert ids(back) == ids(second) and back["has_more"] is True
    assert ids(anthropic_page(NAMES, {"limit": "1000"})) == NAMES  # Claude Code asks for 1000


def test_an_id_no_longer_listed_ends_the_list_and_a_bad_limit_is_the_callers_400() -> None:
    gone = anthropic_page(NAMES, {"after_id": "deleted-model"})
    assert gone == {"data": [], "has_more": False, "first_id": None, "last_id": None}
    assert anthropic_page([], {}) == {"data": [], "has_more": False, "first_id": None, "last_id": None}
    for bad in ("0", "1001", "-1", "ten", ""):
        with pytest.raises(InvalidRequest):
            anthropic_page(NAMES, {"limit": bad})


def test_the_anthropic_shape_is_for_callers_that_speak_anthropic() -> None:
    assert speaks_anthropic({"headers": [(b"anthropic-version", b"2023-06-01")]})
    assert speaks_anthropic({"headers": [(b"x-api-key", b"sk-1")]})
    assert not speaks_anthropic({"headers": [(b"authorization", b"Bearer sk-1")]})
