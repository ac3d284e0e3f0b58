"""schemathesis against the admin API's own OpenAPI document: requests drawn
from it, valid and invalid, never get a 5xx, and every 2xx answer matches the
document. Bounded and repeatable (``derandomize``); its own gateway, since
drawn approval rules could gate the models other tests call."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.stack import ADMIN_KEY, Stack

EXAMPLES_PER_OPERATION = 20


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("admin-fuzz")).start()
    yield s
    s.stop()


def drive(stack: Stack, mode: GenerationMode) -> tuple[Counter[int], list[str]]:
    doc = httpx.get(f"{stack.admin_url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(doc)
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    with httpx.Client(timeout=10) as client:
        for result in schema.get_all_operations():
            fuzz_operation(client, stack, result.ok(), mode, statuses, problems)
    return statuses, problems


def fuzz_operation(
    client: httpx.Client, stack: Stack, op: Any, mode: GenerationMode, statuses: Counter[int], problems: list[str]
) -> None:
    base = f"http://127.0.0.1:{stack.layout.http_port}"

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        database=None,
        deadline=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def one(case: Any) -> None:
        kw = case.as_transport_kwargs(base_url=base, headers={"authorization": f"Bearer {ADMIN_KEY}"})
        content = kw.pop("data", None)
        if "json" in kw:
            content = json.dumps(kw.pop("json")).encode()
            kw["headers"]["content-type"] = "application/json"
        kw.pop("cookies", None)
        resp = client.request(content=content, **kw)
        statuses[resp.status_code] += 1
        where = f"{op.method.upper()} {op.path}"
        if resp.status_code >= 500:
            problems.append(f"{where}: {resp.status_code} {resp.text[:200]}")
        elif 200 <= resp.status_code < 300:
            try:
                op.validate_response(resp)
            except Exception as exc:  # schemathesis raises a failure group naming what does not conform
                problems.append(f"{where}: answer not as documented: {str(exc)[:300]}")
        else:
            error = resp.json().get("error") or {}
            if not (error.get("message") and error.get("type")):
                problems.append(f"{where}: {resp.status_code} not in OpenAI's error shape")

    one()


def test_valid_admin_requests_never_get_a_5xx_and_answers_match_the_document(fuzzed: Stack) -> None:
    statuses, problems = drive(fuzzed, GenerationMode.POSITIVE)
    assert not problems, problems[:5]
    assert sum(n for s, n in statuses.items() if 200 <= s < 300) > 0, statuses


def test_invalid_admin_requests_get_a_4xx(fuzzed: Stack) -> None:
    statuses, problems = drive(fuzzed, GenerationMode.NEGATIVE)
    assert not problems, problems[:5]
    assert sum(n for s, n in statuses.items() if 400 <= s < 500) > 0, statuses
