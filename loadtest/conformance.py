"""Does Sluice speak OpenAI's API as OpenAI publishes it?

schemathesis draws requests from OpenAI's own OpenAPI document (the part Sluice
serves, cut into ``tests/fixtures/openai/openapi-sluice.json``): every one is
valid by OpenAI's schema. The ``model`` of each is set to one of Sluice's demo
models (OpenAI-, Anthropic- and Gemini-shaped upstreams), and each answer is
checked: never a 5xx; every 2xx valid against OpenAI's response schema (each
chunk of a stream against the stream schema); and the share of requests
answered 2xx is counted. Negative mode draws requests that break the schema:
they must get a 4xx, never a 5xx.

    python -m loadtest.conformance [--chat 400] [--embeddings 80]

starts a gateway and prints the totals; ``tests/e2e/test_openai_conformance.py``
asserts on the same totals.
"""

from __future__ import annotations

import argparse
import array
import base64
import datetime
import json
import random
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import msgspec
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

SPEC = Path(__file__).parents[1] / "tests" / "fixtures" / "openai" / "openapi-sluice.json"
MODELS = {
    "/chat/completions": ["demo-model", "claude-model", "gemini-model"],
    "/embeddings": ["embed-model", "gemini-embed"],
}


class Totals(msgspec.Struct):
    operation: str
    mode: str
    requests: int = 0
    ok: int = 0
    server_errors: int = 0
    # 2xx answers whose body (or one of whose stream chunks) OpenAI's schema refuses.
    invalid_answers: int = 0
    statuses: dict[int, int] = {}
    # A few examples of what went wrong, for the reader.
    problems: list[str] = []

    @property
    def acceptance(self) -> float:
        return self.ok / self.requests if self.requests else 0.0


def _sse_chunks(text: str) -> list[Any]:
    out = []
    for line in text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[len("data: ") :]))
    return out


def _check(op: Any, response: httpx.Response, base64_vectors: bool) -> str | None:
    """Why the answer is not what OpenAI's schema says, or None.

    ``base64_vectors``: the request asked for ``encoding_format: base64``, to
    which OpenAI answers each vector as a base64 string, though its published
    schema types ``embedding`` as an array only; such vectors are decoded
    (little-endian float32) before the check, which they must survive."""
    if base64_vectors:
        data = response.json()
        for item in data.get("data", []):
            raw = base64.b64decode(item["embedding"], validate=True)
            item["embedding"] = list(array.array("f", raw))
        response = httpx.Response(
            response.status_code, headers={"content-type": "application/json"}, json=data, request=response.request
        )
        response.elapsed = datetime.timedelta(0)
    try:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            for chunk in _sse_chunks(response.text):
                if "error" in chunk:
                    return f"stream error event: {chunk['error']}"
                one = httpx.Response(200, headers={"content-type": "text/event-stream"}, json=chunk)
                one.request, one.elapsed = response.request, response.elapsed
                op.validate_response(one)
        else:
            op.validate_response(response)
    except Exception as exc:  # schemathesis raises a failure group naming what does not conform
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    return None


def run(
    base_url: str,
    key: str,
    path: str,
    method: str,
    count: int,
    mode: GenerationMode,
    models: list[str] | None = None,
    seed: int = 7,
) -> Totals:
    """``models``: the ``model`` each request names, in turn at random
    (default: every demo model that serves ``path``)."""
    schema = schemathesis.openapi.from_path(SPEC)
    op = schema[path][method.upper()]
    models = models or MODELS.get(path)
    totals = Totals(operation=f"{method.upper()} {path}" + (f" {','.join(models)}" if models else ""), mode=mode.value)
    statuses: Counter[int] = Counter()
    pick = random.Random(seed)

    with httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {key}"}, timeout=30) as client:

        @settings(
            max_examples=count,
            database=None,
            deadline=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy(generation_mode=mode))
        def drive(case: Any) -> None:
            body = case.body
            if models and isinstance(body, dict):
                body["model"] = pick.choice(models)
            content = None
            if method == "post":  # a negative case may be no JSON at all: then its bytes as they are
                content = body if isinstance(body, bytes) else json.dumps(body).encode()
            try:
                response = client.request(
                    method,
                    path.lstrip("/"),
                    content=content,
                    headers={"content-type": "application/json"} if content is not None else None,
                    params=case.query or None,
                )
            except httpx.HTTPError as exc:
                totals.problems.append(f"no answer: {exc!r}")
                totals.requests += 1
                totals.server_errors += 1
                return
            totals.requests += 1
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                totals.server_errors += 1
                totals.problems.append(f"{response.status_code}: {response.text[:200]}")
            elif 200 <= response.status_code < 300:
                base64_vectors = isinstance(body, dict) and body.get("encoding_format") == "base64"
                why = _check(op, response, base64_vectors)
                if why is None:
                    totals.ok += 1
                else:
                    totals.invalid_answers += 1
                    totals.problems.append(why)
            elif mode is GenerationMode.POSITIVE and len(totals.problems) < 400:
                totals.problems.append(f"{response.status_code} for a valid request: {response.text[:300]}")

        drive()
    totals.statuses = dict(sorted(statuses.items()))
    return totals


def main() -> None:
    from tests.stack import DEMO_KEY, Stack

    parser = argparse.ArgumentParser(prog="python -m loadtest.conformance")
    parser.add_argument("--chat", type=int, default=400)
    parser.add_argument("--embeddings", type=int, default=80)
    parser.add_argument("--negative", type=int, default=150)
    args = parser.parse_args()
    stack = Stack(Path(tempfile.mkdtemp(prefix="sluice-conformance-")), timeout_s=30).start()
    try:
        plan = [
            ("/chat/completions", "post", args.chat, GenerationMode.POSITIVE, ["demo-model"]),
            ("/chat/completions", "post", args.chat, GenerationMode.POSITIVE, ["claude-model", "gemini-model"]),
            ("/embeddings", "post", args.embeddings, GenerationMode.POSITIVE, None),
            ("/models", "get", 5, GenerationMode.POSITIVE, None),
            ("/chat/completions", "post", args.negative, GenerationMode.NEGATIVE, None),
            ("/embeddings", "post", args.negative // 3, GenerationMode.NEGATIVE, None),
        ]
        for path, method, count, mode, models in plan:
            t = run(stack.base_url, DEMO_KEY, path, method, count, mode, models)
            print(
                f"{t.operation:50} {t.mode:8} requests={t.requests:4} 2xx-valid={t.ok:4} ({t.acceptance:.1%}) "
                f"5xx={t.server_errors} invalid-2xx={t.invalid_answers} statuses={t.statuses}"
            )
            for problem in t.problems[:8]:
                print("    " + problem.replace("\n", " ")[:300])
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
