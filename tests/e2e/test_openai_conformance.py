"""Sluice against OpenAI's own published API document (schemathesis, offline:
the part Sluice serves is cut into tests/fixtures/openai/ by a script there).

Requests valid by OpenAI's schema, sent to Sluice's demo models: no 5xx ever,
every 2xx answer valid against OpenAI's response schema (stream chunks too,
a Responses stream event by event), every 4xx in OpenAI's error shape, and
at least 99% of chat and Responses requests to the OpenAI-shaped model
answered 2xx. Requests the schema calls invalid get a 4xx, never a 5xx. The
cases are drawn deterministically (``derandomize``), so a run is repeatable
and bounded. (Drawing a Responses request costs more than answering it: its
schema is large; a negative one about 0.25 s.)
"""

from __future__ import annotations

import pytest
from schemathesis import GenerationMode

from loadtest import conformance
from loadtest.conformance import Totals
from tests.stack import DEMO_KEY, Stack


def drive(stack: Stack, path: str, method: str, count: int, mode: GenerationMode, models=None) -> Totals:
    totals = conformance.run(stack.base_url, DEMO_KEY, path, method, count, mode, models)
    assert totals.requests >= min(count, 1)
    assert totals.server_errors == 0, totals.problems[:5]
    assert totals.invalid_answers == 0, totals.problems[:5]
    assert totals.invalid_errors == 0, totals.problems[:5]
    return totals


def test_valid_chat_requests_are_answered_as_openai_would(stack: Stack) -> None:
    totals = drive(stack, "/chat/completions", "post", 300, GenerationMode.POSITIVE, ["demo-model"])
    assert totals.acceptance >= 0.99, [p for p in totals.problems if "valid request" in p][:10]


def test_valid_chat_requests_to_other_families_never_break_the_gateway(stack: Stack) -> None:
    # Anthropic and Gemini cannot take every OpenAI request (uploaded file ids,
    # audio to Anthropic, non-function or custom tools, n > 1 to Anthropic):
    # those are clear 400s, counted not failed. Every other answer is a 2xx.
    totals = drive(stack, "/chat/completions", "post", 150, GenerationMode.POSITIVE, ["claude-model", "gemini-model"])
    assert set(totals.statuses) <= {200, 400}, totals.statuses
    assert totals.ok > totals.requests * 0.5, totals.problems[:10]


@pytest.mark.parametrize(("path", "method", "count"), [("/embeddings", "post", 60), ("/models", "get", 3)])
def test_valid_embeddings_and_model_list_requests(stack: Stack, path: str, method: str, count: int) -> None:
    totals = drive(stack, path, method, count, GenerationMode.POSITIVE)
    assert totals.ok > 0


@pytest.mark.parametrize(("path", "count"), [("/chat/completions", 300), ("/embeddings", 60)])
def test_invalid_requests_get_4xx_never_5xx(stack: Stack, path: str, count: int) -> None:
    totals = drive(stack, path, "post", count, GenerationMode.NEGATIVE)
    assert sum(n for status, n in totals.statuses.items() if 400 <= status < 500) > 0


def test_valid_responses_requests_are_answered_as_openai_would(stack: Stack) -> None:
    # demo-model is an OpenAI deployment: the client's body goes up as it is,
    # the answer (whole, or each event of a stream) is read back and rendered.
    totals = drive(stack, "/responses", "post", 200, GenerationMode.POSITIVE, ["demo-model"])
    assert totals.acceptance >= 0.99, [p for p in totals.problems if "valid request" in p][:10]
    assert totals.streams > 20  # streamed answers were checked too, event by event


def test_valid_responses_requests_to_other_families_never_break_the_gateway(stack: Stack) -> None:
    # A request that must call a tool running on OpenAI's side is a clear 400 there.
    totals = drive(stack, "/responses", "post", 100, GenerationMode.POSITIVE, ["claude-model", "gemini-model"])
    assert set(totals.statuses) <= {200, 400}, totals.statuses
    assert totals.ok > totals.requests * 0.5, totals.problems[:10]
    assert totals.streams > 10


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/responses/{response_id}", "get"),
        ("/responses/{response_id}", "delete"),
        ("/responses/{response_id}/input_items", "get"),
        ("/responses/{response_id}/cancel", "post"),
    ],
)
def test_a_drawn_response_id_is_not_found(stack: Stack, path: str, method: str) -> None:
    # Any id schemathesis draws (unicode, "%", "/", ...) is none of this tenant's responses.
    totals = drive(stack, path, method, 8, GenerationMode.POSITIVE)
    assert totals.statuses == {404: totals.requests}, totals.problems[:5]


def test_invalid_responses_requests_get_4xx_never_5xx(stack: Stack) -> None:
    totals = conformance.run(stack.base_url, DEMO_KEY, "/responses", "post", 50, GenerationMode.NEGATIVE)
    assert totals.server_errors == 0, totals.problems[:5]
    assert totals.invalid_errors == 0, totals.problems[:5]
    # Not asked of the few answered: a built-in tool (web_search, mcp, ...) is
    # kept as sent, for OpenAI to judge, and a response echoes its tools; an
    # invalid one OpenAI refuses, another family never calls.
    # How many of the drawn requests are refused varies with the draw (23 to
    # 30 of 50 seen), as with chat's: some are refused, none breaks the gateway.
    assert sum(n for status, n in totals.statuses.items() if 400 <= status < 500) > 0
