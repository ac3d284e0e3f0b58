"""Does Sluice speak OpenAI's API as OpenAI publishes it?

schemathesis draws requests from OpenAI's own OpenAPI document (the part Sluice
serves, cut into ``tests/fixtures/openai/openapi-sluice.json``): every one is
valid by OpenAI's schema. The ``model`` of each is set to one of Sluice's demo
models (OpenAI-, Anthropic- and Gemini-shaped upstreams), and each answer is
checked: never a 5xx; every 2xx valid against OpenAI's response schema (each
chunk of a stream against the stream schema; a Responses stream event by
event, each ``event:`` line naming its data's type, numbered from 0, ended by
the response's last event and no ``[DONE]``); every 4xx in OpenAI's error
shape; and the share of requests answered 2xx is counted. Negative mode
draws requests that break the schema: they must get a 4xx, never a 5xx.

A Responses request is drawn as OpenAI's schema allows it, which says less
than OpenAI's API does: ``prepare`` gives one without ``input`` (or with an
empty one) an input, and a function tool without a name a name (OpenAI
answers 400 to both, as Sluice does), takes out a ``function_call_output``
whose ``call_id`` no ``function_call`` of the input made and an
``input_image`` with neither ``image_url`` nor ``file_id`` (400 from OpenAI
and from Sluice: "No tool call found for function call output ..."), and
takes out ``conversation`` (the
Conversations API, which Sluice does not serve), ``previous_response_id`` and
item references (a drawn id is no response's or item's: 404, as OpenAI
answers; such ids are drawn by the operations on ``/responses/{response_id}``,
which must answer 404).

    python -m loadtest.conformance [--chat 400] [--embeddings 80] [--responses 150]

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
from schemathesis.core import NOT_SET

SPEC = Path(__file__).parents[1] / "tests" / "fixtures" / "openai" / "openapi-sluice.json"
MODELS = {
    "/chat/completions": ["demo-model", "claude-model", "gemini-model"],
    "/embeddings": ["embed-model", "gemini-embed"],
    "/responses": ["demo-model", "claude-model", "gemini-model"],
}
# What a drawn Responses request says when it has no ``input`` of its own.
DEFAULT_INPUT = "Say something. [mock:chunks=3]"
# The last event of a Responses stream: the response as it ended.
RESPONSES_LAST_EVENTS = ("response.completed", "response.incomplete", "response.failed")


class Totals(msgspec.Struct):
    operation: str
    mode: str
    requests: int = 0
    ok: int = 0
    server_errors: int = 0
    # 2xx answers whose body (or one of whose stream chunks) OpenAI's schema refuses.
    invalid_answers: int = 0
    # 4xx answers not in OpenAI's error shape ({"error": {"message", "type", "param", "code"}}).
    invalid_errors: int = 0
    # 2xx answers that were streams (each checked event by event).
    streams: int = 0
    statuses: dict[int, int] = {}
    # A few examples of what went wrong, for the reader.
    problems: list[str] = []

    @property
    def acceptance(self) -> float:
        return self.ok / self.requests if self.requests else 0.0


def _sse_chunks(text: str) -> list[Any]:
    out = []
    # Lines end at "\n" only: a JSON string may hold U+2028 or U+0085 as it is (str.splitlines splits there).
    for line in text.split("\n"):
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[len("data: ") :]))
    return out


def _sse_events(text: str) -> tuple[list[Any], str | None]:
    """A Responses stream's events, and why it is not framed as OpenAI frames
    one (or None): each event an ``event:`` line naming its data's ``type``
    and one ``data:`` line, numbered from 0, the last the response's end, no ``[DONE]``."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if fields.get("data") == "[DONE]":
            return events, "a [DONE] line: a Responses stream has none"
        if "data" not in fields:
            return events, f"an event without data: {block[:100]!r}"
        event = json.loads(fields["data"])
        if fields.get("event") != event.get("type"):
            return events, f"event: {fields.get('event')!r} before data of type {event.get('type')!r}"
        events.append(event)
    if [e.get("sequence_number") for e in events] != list(range(len(events))):
        return events, "sequence numbers are not 0, 1, 2, ..."
    if not events or events[-1]["type"] not in RESPONSES_LAST_EVENTS:
        return events, f"the stream ends with {events[-1]['type'] if events else 'nothing'}"
    return events, None


def _error_shape(response: httpx.Response) -> str | None:
    """Why a 4xx body is not OpenAI's error object, or None."""
    try:
        error = response.json()["error"]
        fields = {k: type(v) for k, v in error.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"{response.status_code} not in OpenAI's error shape: {response.text[:200]}"
    wanted = {"message": (str,), "type": (str,), "param": (str, type(None)), "code": (str, type(None))}
    if set(fields) != set(wanted) or any(not issubclass(fields[k], ok) for k, ok in wanted.items()):
        return f"{response.status_code} not in OpenAI's error shape: {response.text[:200]}"
    return None


def _item_reference(item: Any) -> bool:
    """An input item that names an earlier item by its id (its ``type`` may be left out)."""
    return isinstance(item, dict) and (
        item.get("type") == "item_reference" or ("type" not in item and "role" not in item)
    )


def _answerable(items: list[Any]) -> list[Any]:
    """Input items less what OpenAI refuses though its schema allows it: a
    tool's output with no call of it before, an image with no source."""
    calls: set[Any] = set()
    out = []
    for item in items:
        if not isinstance(item, dict):
            out.append(item)
            continue
        if item.get("type") == "function_call":
            calls.add(item.get("call_id"))
        elif item.get("type") == "function_call_output" and item.get("call_id") not in calls:
            continue
        for field in ("content", "output"):  # a message's parts, or a tool output's
            if isinstance(item.get(field), list):
                item[field] = [part for part in item[field] if not _sourceless_image(part)]
        out.append(item)
    return out


def _sourceless_image(part: Any) -> bool:
    return (
        isinstance(part, dict)
        and part.get("type") == "input_image"
        and not part.get("image_url")
        and not part.get("file_id")
    )


def prepare(path: str, body: Any, model: str | None, pick: random.Random) -> Any:
    """A drawn body as it is sent: ``model`` one of Sluice's; a Responses
    request with an input, and without what names objects Sluice does not
    hold (see the module's docstring), streamed if it says so, else one in
    two not in the background (the schema's optional ``stream`` is seldom drawn)."""
    if not isinstance(body, dict):
        return body
    if model is not None:
        body["model"] = model
    if path == "/responses":
        if body.get("stream") is None:  # a background response is polled, not streamed
            body["stream"] = not body.get("background") and pick.random() < 0.5
        body.pop("conversation", None)
        body.pop("previous_response_id", None)
        if isinstance(body.get("input"), list):
            body["input"] = _answerable([item for item in body["input"] if not _item_reference(item)])
        if body.get("input") in (None, []):
            body["input"] = DEFAULT_INPUT
        tools = body.get("tools")
        for i, tool in enumerate(tools if isinstance(tools, list) else ()):
            if isinstance(tool, dict) and tool.get("type") == "function" and not tool.get("name"):
                tool["name"] = f"tool_{i}"
    return body


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
        if response.headers.get("content-type", "").startswith("text/event-stream") and op.path == "/responses":
            events, why = _sse_events(response.text)
            if why is not None:
                return why
            for event in events:
                if event["type"] in ("error", "response.failed"):
                    return f"stream {event['type']} event: {json.dumps(event)[:300]}"
                one = httpx.Response(200, headers={"content-type": "text/event-stream"}, json=event)
                one.request, one.elapsed = response.request, response.elapsed
                op.validate_response(one)
        elif response.headers.get("content-type", "").startswith("text/event-stream"):
            for chunk in _sse_chunks(response.text):
                if "error" in chunk:
                    return f"stream error event: {chunk['error']}"
                one = httpx.Response(200, headers={"content-type": "text/event-stream"}, json=chunk)
                one.request, one.elapsed = response.request, response.elapsed
                op.validate_response(one)
        else:
            op.validate_response(response)
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises a failure group naming what does not conform
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
    (default: every demo model that serves ``path``). A path with parameters
    (``/responses/{response_id}``) gets each drawn value (schemathesis quotes it)."""
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
            body = prepare(path, case.body, pick.choice(models) if models else None, pick)
            content = None
            if body is not NOT_SET:  # a negative case may be no JSON at all: then its bytes as they are
                content = body if isinstance(body, bytes) else json.dumps(body).encode()
            try:
                response = client.request(
                    method,
                    case.formatted_path.lstrip("/"),
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
                totals.streams += response.headers.get("content-type", "").startswith("text/event-stream")
                why = _check(op, response, base64_vectors)
                if why is None:
                    totals.ok += 1
                else:
                    totals.invalid_answers += 1
                    totals.problems.append(why)
            else:
                if (why := _error_shape(response)) is not None:
                    totals.invalid_errors += 1
                    totals.problems.insert(0, why)
                if mode is GenerationMode.POSITIVE and len(totals.problems) < 400:
                    totals.problems.append(f"{response.status_code} for a valid request: {response.text[:300]}")

        drive()
    totals.statuses = dict(sorted(statuses.items()))
    return totals


def main() -> None:
    from tests.stack import DEMO_KEY, Stack

    parser = argparse.ArgumentParser(prog="python -m loadtest.conformance")
    parser.add_argument("--chat", type=int, default=400)
    parser.add_argument("--embeddings", type=int, default=80)
    parser.add_argument("--responses", type=int, default=150)
    parser.add_argument("--negative", type=int, default=150)
    args = parser.parse_args()
    stack = Stack(Path(tempfile.mkdtemp(prefix="sluice-conformance-")), timeout_s=30).start()
    try:
        plan = [
            ("/chat/completions", "post", args.chat, GenerationMode.POSITIVE, ["demo-model"]),
            ("/chat/completions", "post", args.chat, GenerationMode.POSITIVE, ["claude-model", "gemini-model"]),
            ("/embeddings", "post", args.embeddings, GenerationMode.POSITIVE, None),
            ("/models", "get", 5, GenerationMode.POSITIVE, None),
            ("/responses", "post", args.responses, GenerationMode.POSITIVE, ["demo-model"]),
            ("/responses", "post", args.responses, GenerationMode.POSITIVE, ["claude-model", "gemini-model"]),
            ("/responses/{response_id}", "get", 10, GenerationMode.POSITIVE, None),
            ("/responses/{response_id}", "delete", 10, GenerationMode.POSITIVE, None),
            ("/responses/{response_id}/input_items", "get", 10, GenerationMode.POSITIVE, None),
            ("/responses/{response_id}/cancel", "post", 10, GenerationMode.POSITIVE, None),
            ("/chat/completions", "post", args.negative, GenerationMode.NEGATIVE, None),
            ("/embeddings", "post", args.negative // 3, GenerationMode.NEGATIVE, None),
            ("/responses", "post", args.negative, GenerationMode.NEGATIVE, None),
        ]
        for path, method, count, mode, models in plan:
            t = run(stack.base_url, DEMO_KEY, path, method, count, mode, models)
            print(
                f"{t.operation:50} {t.mode:8} requests={t.requests:4} 2xx-valid={t.ok:4} ({t.acceptance:.1%}) "
                f"5xx={t.server_errors} invalid-2xx={t.invalid_answers} invalid-4xx={t.invalid_errors} "
                f"statuses={t.statuses}"
            )
            for problem in t.problems[:8]:
                print("    " + problem.replace("\n", " ")[:300])
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
