"""What the call log keeps of a call's answer (``call_logs.entry``): as the
upstream wrote it (placeholders unrestored), less what the tenant's output
checks take out, so a key a model leaked is not kept in a log either."""

from __future__ import annotations

import msgspec

from schemas.replies import Failure, Final
from services import call_logs, mcp_privacy
from services.masking import AnswerRestorer
from services.providers.request_call import RequestCall, output_checks


def logged_answer(call: RequestCall, reply: Final | Failure) -> str:
    """The answer of ``call`` (which ended with ``reply``) as its log keeps it."""
    env = call.env
    if env.tool is not None:
        return _tool_answer(call, reply)
    if env.rest is not None:
        return _rest_answer(call, reply)
    output = output_checks(env)
    message = AnswerRestorer({}, output).message(call.written) if output is not None else call.written
    if isinstance(reply, Failure):
        return call_logs.answer_json(message=message, usage=reply.usage, error=_error(reply))
    return call_logs.answer_json(
        message=message, embeddings=reply.embeddings, finish_reason=reply.finish_reason, usage=reply.usage
    )


def _tool_answer(call: RequestCall, reply: Final | Failure) -> str:
    """An MCP call's: the result as the upstream wrote it, less what the
    output checks take out (as a model's answer)."""
    p, result = call.env.privacy, call.tool_result
    if p is not None and p.output and result:
        result, _ = mcp_privacy.restore_result(result, msgspec.structs.replace(p, vault={}))
    answer: dict[str, object] = {}
    if isinstance(reply, Failure):
        answer["error"] = _error(reply)
    else:
        answer["finish_reason"] = reply.finish_reason
    if result:
        answer["result"] = msgspec.Raw(result)
    return msgspec.json.encode(answer).decode()


def _rest_answer(call: RequestCall, reply: Final | Failure) -> str:
    """A REST call's: the head and the body's first bytes as the caller got
    them (the log's cap cuts the rest)."""
    answer: dict[str, object] = {}
    head = call.rest_head or (reply.rest.head if isinstance(reply, Final) and reply.rest is not None else None)
    if head is not None:
        answer["status"], answer["headers"] = head.status, head.headers
    if isinstance(reply, Failure):
        answer["error"] = _error(reply)
    body = bytes(call.rest_logged) or (reply.data if isinstance(reply, Final) else b"")
    answer["body"] = call_logs.body_text(body[: call.env.call_log_max_bytes])
    return msgspec.json.encode(answer).decode()


def _error(reply: Failure) -> dict[str, str]:
    return {"type": reply.type, "code": reply.code, "message": reply.message}
