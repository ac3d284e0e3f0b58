"""What went wrong with an upstream MCP server, as the gateway's typed errors.

The SDK reports three kinds of failure, and each becomes one error a caller
can act on:

* a JSON-RPC error the server answered: "invalid params", an unknown method
  or resource, a malformed request are the caller's to fix (400
  ``UpstreamInvalidRequest``); any other is the server's (502
  ``UpstreamError``, with its message);
* the connection: no session could be opened, or it was lost while a
  request waited (502 ``UpstreamUnreachable``), or the server refused the
  gateway's credential (502 ``UpstreamAuthFailed``);
* time: no answer within the server's ``timeout_s`` (504 ``UpstreamTimeout``).

A tool's own failure (a result with ``isError: true``) is none of these: it
is an answer, and the caller gets it as one.
"""

from __future__ import annotations

from mcp.shared.exceptions import MCPError
from mcp_types import (
    CONNECTION_CLOSED,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    REQUEST_TIMEOUT,
)

from schemas.errors import (
    GatewayError,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamInvalidRequest,
    UpstreamTimeout,
    UpstreamUnreachable,
)

# MCP's "resource not found" (the spec's own code; some servers answer
# INVALID_PARAMS instead).
RESOURCE_NOT_FOUND = -32002
CALLERS_MISTAKES = frozenset({INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, RESOURCE_NOT_FOUND})
# An upstream's words reach the caller and the attempt row, cut to this.
MESSAGE_MAX = 500


def said(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…"


def stale_session(exc: MCPError) -> bool:
    """The server no longer knows the session (it restarted, or expired it):
    the request never ran, so a new session may send it again. Servers say
    so with a 404 whose JSON-RPC error names the session (the Python SDK
    -32600 "Session not found", the TypeScript SDK -32001); the SDK's own
    stand-in for a bare 404 is "Session terminated"."""
    text = exc.message.lower()
    return (
        exc.code in (INVALID_REQUEST, REQUEST_TIMEOUT)
        and "session" in text
        and ("not found" in text or "terminated" in text or "expired" in text or "unknown" in text)
    )


def from_mcp_error(server: str, method: str, exc: MCPError) -> GatewayError:
    if exc.code == CONNECTION_CLOSED:
        return UpstreamUnreachable(
            f"The connection to MCP server {server!r} was lost during {method}: {said(exc.message)}"
        )
    if exc.code in CALLERS_MISTAKES:
        return UpstreamInvalidRequest(f"MCP server {server!r} refused {method}: {said(exc.message)}")
    return UpstreamError(f"MCP server {server!r} answered {method} with error {exc.code}: {said(exc.message)}")


def timed_out(server: str, method: str, timeout_s: float) -> UpstreamTimeout:
    return UpstreamTimeout(f"MCP server {server!r} did not answer {method} within {timeout_s:g} s.")


def unreachable(server: str, instance: str, why: str, http_status: int = 0) -> GatewayError:
    """A session that could not be opened; ``http_status``: the last HTTP
    status the server answered, if any (a 401 or 403 is our credential)."""
    where = f"MCP server {server!r} ({instance})"
    if http_status in (401, 403):
        return UpstreamAuthFailed(f"{where} refused the gateway's credential (HTTP {http_status}).")
    return UpstreamUnreachable(f"{where} is unreachable: {said(why)}")


def copy(error: GatewayError) -> GatewayError:
    """A fresh instance of ``error`` for another caller (one exception object
    raised in many tasks collects all their tracebacks)."""
    fresh = type(error)(error.message, code=error.code, status=error.status, retry_after_s=error.retry_after_s)
    return fresh


def describe(exc: BaseException) -> str:
    """An exception (an ``ExceptionGroup`` from the SDK's task groups
    included) in a few words: its innermost causes' types and messages."""
    leaves: list[BaseException] = []
    stack = [exc]
    while stack:
        e = stack.pop()
        if isinstance(e, BaseExceptionGroup):
            stack.extend(reversed(e.exceptions))
        else:
            leaves.append(e)
    parts = []
    for e in leaves[:3]:
        text = str(e) or type(e).__name__
        parts.append(text if isinstance(e, MCPError) else f"{type(e).__name__}: {text}")
    return "; ".join(parts) or type(exc).__name__
