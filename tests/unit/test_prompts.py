"""Prompt versions, variables, rendering, labels and diffs, without NATS."""

from __future__ import annotations

import pytest

from schemas.errors import InvalidRequest, RecordNotFound
from schemas.prompts import Prompt, PromptMessage, PromptParams, PromptVersion, Variable
from services import prompts

TRANSLATE = PromptVersion(
    prompt="translate",
    version=1,
    model="demo-model",
    messages=[
        PromptMessage("system", "Translate into {{ target_language }}. Keep {{tone}} tone."),
        PromptMessage("user", "{{text}}"),
    ],
    variables=[
        Variable("text"),
        Variable("target_language", type="enum", values=["French", "German"]),
        Variable("tone", default="a neutral"),
        Variable("max_words", type="number", required=False),
    ],
    params=PromptParams(temperature=0.2, max_tokens=200),
)


def test_a_bound_prompt_renders_its_messages_in_one_pass() -> None:
    prompts.check(TRANSLATE)
    values = prompts.bind(TRANSLATE, {"text": "{{tone}} stays as written", "target_language": "French"})
    body = prompts.render(TRANSLATE, values, stream=True)
    assert [m.content for m in body.messages] == [
        "Translate into French. Keep a neutral tone.",
        "{{tone}} stays as written",  # a value is text: never expanded again
    ]
    assert (body.model, body.temperature, body.max_tokens, body.stream) == ("demo-model", 0.2, 200, True)
    assert body.response_format is None


@pytest.mark.parametrize(
    ("given", "names"),
    [
        ({"target_language": "French"}, "'text'"),  # missing
        ({"text": "x", "target_language": "Klingon"}, "'target_language'"),  # not in the enum
        ({"text": 5, "target_language": "French"}, "'text'"),  # a number for a string
        ({"text": "x", "target_language": "French", "max_words": "ten"}, "'max_words'"),
        ({"text": "x", "target_language": "French", "max_words": True}, "'max_words'"),  # a bool is no number
        ({"text": "x", "target_language": "French", "colour": "red"}, "'colour'"),  # unknown
    ],
)
def test_a_wrong_variable_is_a_400_naming_it(given: dict, names: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        prompts.bind(TRANSLATE, given)
    assert info.value.status == 400 and names in info.value.message and info.value.code == "invalid_variable"


def test_numbers_read_as_people_write_them() -> None:
    values = prompts.bind(TRANSLATE, {"text": "x", "target_language": "German", "max_words": 20.0})
    assert (
        values["max_words"] == "20"
        and prompts.bind(TRANSLATE, {"text": "x", "target_language": "German"})["max_words"] == ""
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"messages": []}, "at least one message"),
        ({"messages": [PromptMessage("user", "{{nope}}")]}, "{{nope}}"),
        ({"variables": [Variable("a"), Variable("a")]}, "twice"),
        ({"variables": [Variable("bad name")]}, "Variable name"),
        ({"variables": [Variable("e", type="enum")]}, "without values"),
        ({"variables": [Variable("n", type="number", default="five")]}, "must be a number"),
    ],
)
def test_a_version_that_cannot_render_is_refused(change: dict, message: str) -> None:
    import msgspec

    bad = msgspec.structs.replace(TRANSLATE, **change)
    with pytest.raises(InvalidRequest, match=message):
        prompts.check(bad)


def test_an_output_schema_asks_for_json_that_matches_it() -> None:
    import msgspec

    schema = {"type": "object", "properties": {"label": {"enum": ["positive", "negative"]}}, "required": ["label"]}
    sentiment = msgspec.structs.replace(TRANSLATE, prompt="sentiment analysis!", output_schema=schema)
    body = prompts.render(sentiment, prompts.bind(sentiment, {"text": "x", "target_language": "French"}))
    assert body.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "sentiment_analysis_", "schema": schema, "strict": True},
    }


def test_labels_move_and_roll_back_and_versions_are_found_by_number() -> None:
    p = Prompt(name="translate", latest=3, labels={"production": 2})
    assert prompts.version_of(p, "production") == 2 and prompts.version_of(p, "3") == 3
    moved = prompts.with_label(p, "production", 3)
    assert prompts.version_of(moved, "production") == 3 and p.labels == {
        "production": 2
    }  # records are not changed in place
    assert prompts.version_of(prompts.with_label(moved, "production", 2), "production") == 2  # rollback
    for bad in (
        lambda: prompts.version_of(p, "staging"),
        lambda: prompts.version_of(p, "4"),
        lambda: prompts.with_label(p, "x", 9),
    ):
        with pytest.raises(RecordNotFound):
            bad()
    with pytest.raises(InvalidRequest):
        prompts.with_label(p, "12", 1)  # a label of digits would read as a version


def test_a_diff_shows_what_changed_and_nothing_else() -> None:
    import msgspec

    v2 = msgspec.structs.replace(
        TRANSLATE, version=2, params=PromptParams(temperature=0.7, max_tokens=200), created_at_ms=5
    )
    out = prompts.diff(TRANSLATE, v2)
    assert "translate v1" in out and "translate v2" in out
    changed = [line for line in out.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ['-    "temperature": 0.2,', '+    "temperature": 0.7,'], out
