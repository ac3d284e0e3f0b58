"""Sluice against OpenAI's own published API document (schemathesis, offline:
the part Sluice serves is cut into tests/fixtures/openai/ by a script there).

Requests valid by OpenAI's schema, sent to Sluice's demo models: no 5xx ever,
every 2xx answer valid against OpenAI's response schema (stream chunks too),
and at least 99% of chat requests to the OpenAI-shaped model answered 2xx.
Requests the schema calls invalid get a 4xx, never a 5xx. The cases are drawn
deterministically (``derandomize``), so a run is repeatable and bounded.
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
