"""Prompt APIs' logic without I/O: plans, callers, lifecycle, output checks,
and changing prompt records."""

from __future__ import annotations

import pytest

from schemas.chat import ChatBody, Message
from schemas.control import ApiKey, Subscription
from schemas.errors import InvalidRequest, PermissionDenied, RecordConflict
from schemas.prompts import ChainStep, Prompt, PromptApi, PromptMessage, PromptVersion, Variable
from services import prompt_api, prompt_records
from services.prompt_api import ApiIsDraft, ApiNotFound, ApiRetired, PromptBook

SCHEMA = {"type": "object", "required": ["label"], "properties": {"label": {"enum": ["good", "bad"]}}}


def version(name: str, number: int = 1, **fields: object) -> PromptVersion:
    base: dict = {"messages": [PromptMessage(role="user", template="{{text}}")], "model": "m"}
    base["variables"] = [Variable(name="text")]
    return PromptVersion(prompt=name, version=number, **(base | fields))


def book() -> PromptBook:
    prompts = {
        "a": Prompt(
            name="a", latest=2, labels={"production": 1, "staging": 2}, api=PromptApi(slug="a-api", state="published")
        ),
        "b": Prompt(name="b", latest=1, labels={"production": 1}),
        "chain": Prompt(
            name="chain", latest=1, labels={"production": 1}, api=PromptApi(slug="chain", state="published")
        ),
        "hidden": Prompt(name="hidden", latest=1, labels={"production": 1}, api=PromptApi(slug="hidden")),
    }
    steps = [ChainStep(prompt="a", label="staging", output="text"), ChainStep(prompt="b")]
    versions = {
        "a.1": version("a"),
        "a.2": version("a", 2, output_schema=SCHEMA),
        "b.1": version("b"),
        "chain.1": PromptVersion(prompt="chain", version=1, steps=steps, variables=[Variable(name="text")]),
        "hidden.1": version("hidden"),
    }
    return PromptBook(prompts, versions)


def test_a_slug_is_served_by_its_labels_version_and_a_chain_by_its_steps_labels() -> None:
    plan = book().plan("a-api")
    assert (plan.prompt.name, plan.version.version, [s.version.version for s in plan.steps]) == ("a", 1, [1])
    chain = book().plan("chain")
    assert [(s.version.prompt, s.version.version, s.output) for s in chain.steps] == [("a", 2, "text"), ("b", 1, "")]
    with pytest.raises(ApiNotFound):
        book().plan("nope")


def test_published_lists_what_callers_can_call_with_the_schema_its_answer_follows() -> None:
    listed = {p.api.slug: schema for p, _, schema in book().published() if p.api}
    assert listed == {"a-api": None, "chain": None}  # the draft is not listed; a's production has no schema


def test_who_may_call_what() -> None:
    caller, admin = ApiKey(id="k", tenant_id="t"), ApiKey(id="adm", tenant_id="t", role="tenant_admin")
    prompt_api.check_caller("x", PromptApi(slug="x", state="published"), caller, False, [])
    with pytest.raises(ApiRetired) as gone:
        prompt_api.check_caller("x", PromptApi(slug="x", state="retired", successor="y"), caller, False, [])
    assert gone.value.status == 410 and "/apis/y" in gone.value.message
    draft = PromptApi(slug="x", state="draft")
    for key, test in ((caller, True), (admin, False)):
        with pytest.raises(ApiIsDraft):
            prompt_api.check_caller("x", draft, key, test, [])
    prompt_api.check_caller("x", draft, admin, True, [])
    gated = PromptApi(slug="x", state="published", requires_approval=True)
    with pytest.raises(PermissionDenied):
        prompt_api.check_caller("x", gated, caller, False, [])
    approved = Subscription(id="s", tenant_id="t", model="apis/x", state="approved")
    prompt_api.check_caller("x", gated, caller, False, [approved])


def test_a_deprecated_api_says_since_when_until_when_and_what_instead() -> None:
    api = PromptApi(
        slug="x", state="deprecated", successor="y", deprecated_at_ms=1_700_000_000_000, sunset_at_ms=1_893_456_000_000
    )
    assert dict(prompt_api.lifecycle_headers(api)) == {
        "deprecation": "@1700000000",
        "sunset": "Tue, 01 Jan 2030 00:00:00 GMT",
        "link": '</apis/y>; rel="successor-version"',
    }
    assert prompt_api.lifecycle_headers(PromptApi(slug="x", state="published")) == []


def test_an_answer_is_parsed_against_the_schema_and_a_wrong_one_says_where() -> None:
    v = version("a", output_schema=SCHEMA)
    assert prompt_api.parse_output(v, '{"label": "good"}') == ({"label": "good"}, None)
    assert prompt_api.parse_output(v, '```json\n{"label": "bad"}\n```') == ({"label": "bad"}, None)
    _, problem = prompt_api.parse_output(v, '{"label": "meh"}')
    assert problem is not None and problem.startswith("at /label:")
    _, problem = prompt_api.parse_output(v, "not json")
    assert problem is not None and "not JSON" in problem
    assert prompt_api.parse_output(version("b"), "plain text") == ("plain text", None)


def test_a_repair_asks_again_with_the_answer_and_what_was_wrong() -> None:
    body = ChatBody(model="m", messages=[Message(role="user", content="hi")], stream=True)
    repaired = prompt_api.repair_body(body, '{"x": 1}', "at /: missing label")
    assert [m.role for m in repaired.messages] == ["user", "assistant", "user"]
    assert "missing label" in repaired.messages[-1].content and repaired.stream is False
    assert len(body.messages) == 1  # the original is left alone


def test_records_new_versions_move_labels_and_keep_the_deprecation_date() -> None:
    prompt, v1 = prompt_records.first("p", version(""), 1000, "adm")
    assert (prompt.labels, v1.version, v1.prompt, prompt.owner) == ({"production": 1}, 1, "p", "api")
    prompt, v2 = prompt_records.next_version(prompt, version(""), 2000, "adm", label="staging")
    assert (prompt.latest, prompt.labels, v2.version) == (2, {"production": 1, "staging": 2}, 2)
    published, action = prompt_records.with_api(prompt, PromptApi(slug="p", state="published"), {}, 3000)
    assert action == "publish"
    deprecated, action = prompt_records.with_api(published, PromptApi(slug="p", state="deprecated"), {}, 4000)
    assert (action, deprecated.api.deprecated_at_ms) == ("deprecate", 4000)
    retired, action = prompt_records.with_api(deprecated, PromptApi(slug="p", state="retired"), {}, 5000)
    assert (action, retired.api.deprecated_at_ms) == ("retire", 4000)
    other = Prompt(name="o", api=PromptApi(slug="p"))
    with pytest.raises(RecordConflict):
        prompt_records.with_api(prompt, PromptApi(slug="p"), {"o": other}, 0)
    with pytest.raises(InvalidRequest):
        prompt_records.with_api(prompt, PromptApi(slug="p", label="canary"), {}, 0)
