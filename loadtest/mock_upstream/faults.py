"""Per-request behaviour of the mock, set by defaults and by directives.

A directive is ``[mock:name=value]`` (or ``[mock:name]``) anywhere in the
request's messages, so a test can inject a fault through the whole gateway
without any side channel:

``status=429``  answer with that HTTP error      ``latency_ms=N``  wait before answering
``chunks=N``    words in the answer               ``chunk_ms=N``    gap between streamed chunks
``cut_after=N`` drop the connection after N chunks ``no_usage``     leave out ``usage``
``hang``        never answer (a timeout)         ``echo``          answer with the last message (with
                                                  ``tool``: as the call's first argument)
``tool``        call the first declared tool      ``zero_usage``    report usage of zero tokens
``tool_once``   call the first declared tool, unless the conversation already holds a tool's result
                (an agent that runs the tool and sends its output back then gets a text answer)
``cached=N``    report N prompt tokens as cached  ``reasoning=N``   report N reasoning tokens
``bad_json``    structured output that breaks its schema, also when asked again (a repair)
``bad_json_once`` structured output that breaks its schema, unless the conversation already has an answer
``burst``       the whole stream in one write (as a fast server's, or a busy network's, reaches the gateway)
``split=N``     with ``echo``, the answer in pieces of N characters, not words (a value arrives in many chunks)
"""

from __future__ import annotations

import re

import msgspec

_DIRECTIVE = re.compile(r"\[mock:([a-z_]+)(?:=([0-9]+))?\]")


class Behaviour(msgspec.Struct):
    latency_ms: int = 0
    chunk_ms: int = 0
    chunks: int = 12
    status: int = 200
    cut_after: int = -1
    no_usage: bool = False
    hang: bool = False
    echo: bool = False
    tool: bool = False
    tool_once: bool = False
    zero_usage: bool = False
    cached: int = 0
    reasoning: int = 0
    bad_json: bool = False
    bad_json_once: bool = False
    burst: bool = False
    split: int = 0


_FLAGS = ("no_usage", "hang", "echo", "tool", "tool_once", "zero_usage", "bad_json", "bad_json_once", "burst")
_NUMBERS = ("latency_ms", "chunk_ms", "chunks", "status", "cut_after", "cached", "reasoning", "split")


# How each API family writes a tool's result into a conversation.
_TOOL_RESULTS = (b'"role":"tool"', b'"tool_result"', b'"functionResponse"', b'"function_call_output"')


def holds_tool_result(body: bytes) -> bool:
    compact = body.replace(b'": "', b'":"')
    return any(marker in compact for marker in _TOOL_RESULTS)


def apply_directives(base: Behaviour, text: str) -> Behaviour:
    if "[mock:" not in text:
        return base
    b = msgspec.structs.replace(base)
    for name, value in _DIRECTIVE.findall(text):
        if name in _FLAGS:
            setattr(b, name, True)
        elif name in _NUMBERS and value:
            setattr(b, name, int(value))
    return b
