"""``n`` > 1 with the official openai SDK: every choice comes back, streamed
or not, from a family that gives several; a family that cannot says so."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import openai
import pytest

from tests.stack import DEMO_KEY, Stack


@pytest.fixture
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0, timeout=20) as c:
        yield c


def test_every_choice_of_a_completion_comes_back(client: openai.OpenAI, stack: Stack) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="demo-model", messages=[{"role": "user", "content": "hi [mock:chunks=3]"}], n=3
    )
    resp = raw.parse()
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert [c.message.content for c in resp.choices] == [
        "Sluice routes this",
        "Sluice routes this #1",
        "Sluice routes this #2",
    ]
    assert all(c.finish_reason == "stop" for c in resp.choices)
    row = stack.request_row(raw.headers["x-request-id"])
    assert row["completion_tokens"] == resp.usage.completion_tokens == 9  # every choice's tokens billed


def test_every_choice_of_a_stream_comes_back(client: openai.OpenAI) -> None:
    texts: dict[int, str] = defaultdict(str)
    finishes = {}
    for chunk in client.chat.completions.create(
        model="demo-model", messages=[{"role": "user", "content": "hi [mock:chunks=2]"}], n=2, stream=True
    ):
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
            if c.finish_reason:
                finishes[c.index] = c.finish_reason
    assert dict(texts) == {0: "Sluice routes", 1: "Sluice routes #1"}
    assert finishes == {0: "stop", 1: "stop"}


def test_a_family_that_answers_once_refuses_n_above_1(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude-model", messages=[{"role": "user", "content": "hi"}], n=2)
    assert info.value.code == "n_not_supported"
