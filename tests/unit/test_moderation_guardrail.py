"""The tenant's moderation guardrail, its pure parts: which requests it
covers, which texts it sends, what verdicts mean, the setting's checks in
the config file, routing's deployments for it, and that a caller cannot
set it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from schemas.chat import ChatBody, Cost, ImagePart, ImageUrl, Message, TextPart
from schemas.control import ModelRoute, Tenant, TenantModeration
from schemas.envelope import Deployment, Envelope, ModerationCheck, Span
from schemas.errors import UpstreamOverloaded
from schemas.replies import Timing
from schemas.tasks import ModerationVerdict
from services import admission, config, routing
from services import moderation_guardrail as guardrail
from services.admission import RecentIds
from services.config import ConfigError
from services.health import HealthBoard
from services.records import time_split

NOW = 1_700_000_000_000_000_000


def chat(*messages: Message, api: str = "chat") -> Envelope:
    return Envelope(reply="_INBOX.x", body=ChatBody(model="m", messages=list(messages)), api=api)  # type: ignore[arg-type]


def verdict(*categories: str, flagged: bool | None = None) -> ModerationVerdict:
    hit = set(categories)
    names = {"violence", "hate", "harassment", *hit}
    return ModerationVerdict(
        flagged=bool(hit) if flagged is None else flagged,
        categories={n: n in hit for n in names},
        category_scores={n: 0.9 if n in hit else 0.01 for n in names},
    )


def test_a_tenant_setting_covers_the_chat_apis_it_names_and_nothing_else() -> None:
    tenant = Tenant(id="t", moderation=TenantModeration(model="mod", action="flag"))
    hello = Message(role="user", content="hi")
    assert guardrail.check_for(tenant, chat(hello)) == ModerationCheck(model="mod", action="flag")
    assert guardrail.check_for(tenant, chat(hello, api="messages")) is not None
    assert guardrail.check_for(tenant, chat(hello, api="responses")) is not None
    # A token count makes no answer; an embeddings request has no chat body; no setting, no check.
    assert guardrail.check_for(tenant, chat(hello, api="count_tokens")) is None
    assert guardrail.check_for(tenant, Envelope(reply="_INBOX.x", api="embeddings")) is None
    assert guardrail.check_for(Tenant(id="t"), chat(hello)) is None
    assert guardrail.check_for(None, chat(hello)) is None
    only_messages = Tenant(id="t", moderation=TenantModeration(model="mod", apis=["messages"]))
    assert guardrail.check_for(only_messages, chat(hello)) is None


def test_every_message_text_is_one_input_named_by_where_it_is() -> None:
    body = ChatBody(
        model="m",
        messages=[
            Message(role="system", content="Be kind."),
            Message(role="user", content=[TextPart(text="look"), ImagePart(image_url=ImageUrl(url="https://x/y.png"))]),
            Message(role="assistant", content=""),
            Message(role="user", content=[TextPart(text=""), TextPart(text="and attack")]),
        ],
    )
    assert guardrail.texts(body) == [
        guardrail.Text("messages[0].content", "Be kind."),
        guardrail.Text("messages[1].content[0]", "look"),
        guardrail.Text("messages[3].content[1]", "and attack"),
    ]


def test_more_texts_than_one_moderation_takes_are_joined_in_runs_none_lost() -> None:
    n = guardrail.MAX_INPUTS * 2 + 3
    body = ChatBody(model="m", messages=[Message(role="user", content=f"t{i}") for i in range(n)])
    inputs = guardrail.texts(body)
    assert len(inputs) <= guardrail.MAX_INPUTS
    assert "\n\n".join(t.text for t in inputs).split("\n\n") == [f"t{i}" for i in range(n)]
    assert inputs[0].where == "messages[0].content..messages[2].content"
    request = guardrail.request_of(ModerationCheck(model="mod"), inputs)
    assert request.model == "mod" and request.input == [t.text for t in inputs]


def test_each_flagged_category_of_each_text_is_a_detection_with_the_action() -> None:
    inputs = [guardrail.Text("messages[0].content", "calm"), guardrail.Text("messages[1].content", "we attack")]
    found = guardrail.found(inputs, [verdict(), verdict("violence", "harassment")], "flag")
    assert [(d.detector, d.action, d.where, d.start, d.end) for d in found] == [
        ("moderation:harassment", "flag", "messages[1].content", 0, 9),
        ("moderation:violence", "flag", "messages[1].content", 0, 9),
    ]
    # An upstream's odd category name never becomes a detector name; a flag without a category still counts.
    odd = guardrail.found(inputs[:1], [verdict("Violence; DROP TABLE")], "block")
    assert [d.detector for d in odd] == ["moderation:other"]
    bare = guardrail.found(inputs[:1], [verdict(flagged=True)], "block")
    assert [d.detector for d in bare] == ["moderation:flagged"]
    with pytest.raises(ValueError):  # a verdict short: never read as "the rest are clean"
        guardrail.found(inputs, [verdict()], "flag")


def test_a_refusal_names_categories_and_places_never_the_text() -> None:
    inputs = [guardrail.Text(f"messages[{i}].content", "we attack at dawn") for i in range(7)]
    found = guardrail.found(inputs, [verdict("violence")] * 6 + [verdict("hate")], "block")
    error = guardrail.refusal(found)
    assert (error.status, error.code, error.type.value) == (400, "content_flagged", "invalid_request_error")
    assert "hate, violence" in error.message and "messages[0].content" in error.message
    assert "and 2 more" in error.message and "dawn" not in error.message


def test_an_unavailable_moderation_is_a_503_that_says_why() -> None:
    check = ModerationCheck(model="mod")
    failed = guardrail.unavailable(check, UpstreamOverloaded("x"))
    assert (failed.status, failed.code) == (503, "moderation_unavailable")
    assert "upstream_overloaded" in failed.message and "'mod'" in failed.message
    assert "no deployment" in guardrail.unavailable(check, None).message
    mark = guardrail.unchecked("flag")
    assert (mark.detector, mark.action) == ("moderation:unchecked", "flag")


def test_two_costs_add_part_by_part() -> None:
    total = guardrail.plus(Cost(input=1, output=2, units=3), Cost(input=10, cached_input=5, call=7))
    assert total == Cost(input=11, cached_input=5, output=2, call=7, units=3) and total.total == 28


CONFIG = """
[[tenants]]
id = "acme"
moderation = {{ model = "{model}", action = "flag"{apis} }}

[[models]]
name = "omni"
provider = "openai"
base_url = "http://127.0.0.1:1/v1"
upstream_model = "omni-moderation-latest"

[[models]]
name = "gpt"
provider = "openai"
base_url = "http://127.0.0.1:1/v1"
upstream_model = "gpt-4o-mini"
"""


def records(tmp_path: Path, model: str, apis: str = "") -> config.ControlRecords:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.format(model=model, apis=apis))
    return config.control_records(config.load(path))


def test_the_config_file_sets_a_tenants_guardrail_on_a_moderation_model(tmp_path: Path) -> None:
    setting = records(tmp_path, "omni").tenants["acme"].moderation
    assert setting == TenantModeration(model="omni", action="flag", apis=["chat", "messages", "responses"])
    assert records(tmp_path, "omni", ', apis = ["messages"]').tenants["acme"].moderation.apis == ["messages"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("model", "apis", "message"),
    [
        ("gpt", "", "not a configured model of mode moderation"),
        ("ghost", "", "not a configured model of mode moderation"),
        ("omni", ", apis = []", "moderation.apis"),
        ("omni", ', apis = ["chat", "chat"]', "moderation.apis"),
    ],
)
def test_a_guardrail_that_could_not_run_is_a_config_error(tmp_path: Path, model: str, apis: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        records(tmp_path, model, apis)


def test_an_unknown_api_in_the_setting_is_refused_as_the_file_is_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        records(tmp_path, "omni", ', apis = ["embeddings"]')


def dep(name: str, upstream: str) -> Deployment:
    return Deployment(
        name=name, provider="openai", base_url="http://x/v1", upstream_model=upstream, catalog_model=upstream
    )


def test_routing_puts_the_moderation_groups_deployments_on_a_new_check() -> None:
    table = routing.routes_by_name(
        {
            "omni": ModelRoute(
                name="omni", deployments=[dep("m1", "omni-moderation-latest")], retries=2, aliases=["mod"]
            ),
            "gpt": ModelRoute(name="gpt", deployments=[dep("g1", "gpt-4o-mini")]),
        }
    )
    board, rng = HealthBoard(), random.Random(1)
    stamped = ModerationCheck(model="mod", action="flag")
    planned = routing.plan_moderation(table, stamped, "key", board, 1.0, rng)
    assert (planned.group, [d.name for d in planned.candidates], planned.retries) == ("omni", ["m1"], 2)
    assert planned.action == "flag" and planned is not stamped and stamped.candidates == []
    # A chat model, or a name nothing serves: no deployment (the provider answers for it), never the chat's.
    for model in ("gpt", "ghost"):
        none = routing.plan_moderation(table, ModerationCheck(model=model), "key", board, 1.0, rng)
        assert none.candidates == [] and none.group == ""


@pytest.mark.parametrize("from_ingress", [True, False])
def test_a_callers_own_check_and_deployments_are_wiped(from_ingress: bool) -> None:
    evil = Deployment(name="x", provider="openai", base_url="http://evil.test/v1", upstream_model="m")
    env = chat(Message(role="user", content="hi"))
    env.moderation = ModerationCheck(model="lax", action="flag", candidates=[evil])
    env.id, env.received_at_ns = "", NOW
    admission.admit(env, NOW, 2.0, from_ingress=from_ingress, ids=RecentIds())
    assert env.moderation is None


def test_the_guardrails_span_is_inside_the_providers_not_time_held_twice() -> None:
    ms = 1_000_000
    timing = Timing(
        spans=[Span("policy", 0, 1 * ms), Span("provider", 2 * ms, 12 * ms), Span("moderation", 3 * ms, 7 * ms)]
    )
    split = time_split(timing, [], latency_ns=13 * ms)
    assert (split["policy_ns"], split["provider_ns"], split["bus_ns"]) == (1 * ms, 10 * ms, 2 * ms)
