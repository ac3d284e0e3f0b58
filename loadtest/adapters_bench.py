"""Translation overhead of each provider adapter, in microseconds of CPU on
this machine: per request (unified request -> upstream bytes, and upstream
answer -> unified result) and per streamed chunk (one upstream SSE payload ->
unified delta). Pure translation, no I/O: python -m loadtest.adapters_bench
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import msgspec

from loadtest.mock_upstream import anthropic_shape, gemini_shape, openai_shape
from loadtest.mock_upstream.answer import plan
from loadtest.mock_upstream.faults import Behaviour
from schemas.chat import ChatBody, Delta, Message, Usage
from schemas.envelope import Deployment
from services.apis import anthropic_shapes as inbound
from services.providers.anthropic.types import ARequest
from services.providers.registry import provider

_json = msgspec.json.Encoder()

BODY = ChatBody(
    model="bench",
    messages=[
        Message(role="system", content="You are a helpful assistant. Answer briefly and precisely."),
        Message(role="user", content="What is the capital of France? " * 8),
        Message(role="assistant", content="Paris is the capital of France."),
        Message(role="user", content="And what is its population, roughly? Give a single number."),
    ],
    temperature=0.2,
    max_tokens=256,
)
ANSWER = plan("bench prompt", "bench", 4, [], Behaviour(chunks=40))

# family -> (provider name, upstream answer bytes, one text-delta stream payload)
CASES = {
    "openai": (
        "openai",
        _json.encode(openai_shape.complete(ANSWER, "gpt-4o-mini")),
        openai_shape.stream(ANSWER, "gpt-4o-mini", True)[1].data.split(b"data: ", 1)[1].strip(),
    ),
    "azure": ("azure", _json.encode(openai_shape.complete(ANSWER, "gpt-4o-mini")), None),
    "mistral": ("mistral", _json.encode(openai_shape.complete(ANSWER, "mistral-small")), None),
    "groq (compatible)": ("groq", _json.encode(openai_shape.complete(ANSWER, "llama")), None),
    "anthropic": (
        "anthropic",
        _json.encode(anthropic_shape.complete(ANSWER, "claude-sonnet-4")),
        anthropic_shape.stream(ANSWER, "claude-sonnet-4")[3].data.split(b"data: ", 1)[1].strip(),
    ),
    "gemini": (
        "gemini",
        _json.encode(gemini_shape.complete(ANSWER, "gemini-2.5-flash")),
        gemini_shape.stream(ANSWER, "gemini-2.5-flash")[0].data.split(b"data: ", 1)[1].strip(),
    ),
    "cohere": (
        "cohere",
        _json.encode(
            {
                "id": "x",
                "finish_reason": "COMPLETE",
                "message": {"role": "assistant", "content": [{"type": "text", "text": ANSWER.text}]},
                "usage": {"billed_units": {"input_tokens": 40, "output_tokens": 40}},
            }
        ),
        b'{"type":"content-delta","index":0,"delta":{"message":{"content":{"text":" word"}}}}',
    ),
}


def per_call_us(fn: Callable[[], object], n: int, repeats: int) -> float:
    """Median over ``repeats`` runs of the mean CPU time of one call, in µs."""
    runs = []
    for _ in range(repeats):
        start = time.process_time_ns()
        for _ in range(n):
            fn()
        runs.append((time.process_time_ns() - start) / n / 1000)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    n, r = args.n, args.repeats

    print(f"{'adapter':<20}{'request out µs':>16}{'answer in µs':>14}{'per chunk µs':>14}")
    for family, (name, answer, chunk) in CASES.items():
        adapter = provider(name).chat
        dep = Deployment(name="b", provider=name, base_url="http://up", upstream_model="m")
        out = per_call_us(lambda: adapter.build_request(dep, BODY, "key", stream=False), n, r)  # noqa: B023
        back = per_call_us(lambda: adapter.parse_response(answer), n, r)  # noqa: B023
        if chunk is not None:
            text = chunk.decode()
            stream = adapter.stream_parser()
            per_chunk = f"{per_call_us(lambda: stream.feed(text), n * 4, r):.1f}"  # noqa: B023
        else:
            per_chunk = "(= openai)"
        print(f"{family:<20}{out:>16.1f}{back:>14.1f}{per_chunk:>14}")

    # The Anthropic-shaped ingress: request in, answer out, one stream event out.
    request = msgspec.json.encode(
        {
            "model": "m",
            "max_tokens": 256,
            "system": "You are a helpful assistant.",
            "messages": [msgspec.to_builtins(m) for m in BODY.messages[1:]],
        }
    )
    decode = msgspec.json.Decoder(ARequest).decode
    message = Message(role="assistant", content=ANSWER.text)
    usage = Usage(prompt_tokens=40, completion_tokens=40)
    renderer = inbound.StreamRenderer("id", "m")
    delta = Delta(content=" word")
    inbound_in = per_call_us(lambda: inbound.to_chat_body(decode(request)), n, r)
    inbound_out = per_call_us(lambda: _json.encode(inbound.response("id", "m", message, "stop", usage)), n, r)
    inbound_chunk = per_call_us(lambda: renderer.delta(delta), n * 4, r)
    print(f"{'/v1/messages ingress':<20}{inbound_in:>16.1f}{inbound_out:>14.1f}{inbound_chunk:>14.1f}")
    print("(ingress row: Anthropic request in -> unified; unified answer -> Anthropic JSON; one delta -> events)")


if __name__ == "__main__":
    main()
