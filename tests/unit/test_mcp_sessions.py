"""The ingress's memory of confirmed MCP sessions stays bounded."""

from __future__ import annotations

from ingress import mcp_sessions
from ingress.mcp_sessions import McpSession, McpSessions


def test_at_most_so_many_sessions_are_remembered_the_least_recent_go_first() -> None:
    sessions = McpSessions(js=None, ttl_s=60)  # type: ignore[arg-type]  # no read happens here
    record = McpSession("k", "t", "sha", 1)
    for i in range(mcp_sessions.CONFIRMED_MAX + 1):
        sessions._remember(f"s{i}", record, i)
    kept = sessions._confirmed
    assert len(kept) == mcp_sessions.CONFIRMED_MAX
    assert "s0" not in kept and f"s{mcp_sessions.CONFIRMED_MAX}" in kept
