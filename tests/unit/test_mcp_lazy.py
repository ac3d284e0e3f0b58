"""The mcp SDK (with pydantic, httpx2, starlette: ~50 MB of a process's
memory) is loaded only by a process that needs it: a provider once an MCP
server is registered, an ingress with its first MCP request. Each check runs
in a fresh interpreter, as this test process may hold the SDK already."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Every check first imports what the pipeline's and the ingress's processes
# import. pydantic is checked too: nothing else in those imports loads it.
PRELUDE = """
import asyncio, sys
import workers.pipeline, workers.policy, workers.redaction, workers.routing, workers.cache, workers.provider
import ingress.app

def sdk():
    return sorted(m for m in sys.modules if m == "mcp" or m.startswith(("mcp.", "mcp_types", "pydantic", "httpx2")))

assert not sdk(), sdk()
"""


def run(body: str) -> None:
    script = PRELUDE + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_pipeline_and_ingress_import_no_sdk() -> None:
    run("""
    from ingress import app
    from ingress.mcp_bus import McpBus
    from services.config import GatewaySettings

    app.IngressApp(GatewaySettings())
    McpBus(None, lambda: None)  # the bus door, made at start-up, before its first message
    assert not sdk(), sdk()
    from ingress import mcp_endpoint
    assert app.MCP_PATH == mcp_endpoint.PATH  # app.py tells /mcp apart without that module
    assert "mcp" in sys.modules
    """)


def test_a_provider_without_servers_answers_an_mcp_call_with_a_typed_error_and_no_sdk() -> None:
    run("""
    from schemas.envelope import Deployment
    from schemas.mcp import McpCall, McpServer
    from services.providers.call import CallFailed, CallProgress
    from workers.provider import McpSide

    side = McpSide()
    dep = Deployment(name="demo-tools/0", provider="mcp", base_url="http://127.0.0.1:1/mcp", upstream_model="echo")
    try:
        asyncio.run(side.call(dep, McpCall(server="demo-tools", name="echo"), CallProgress()))
    except CallFailed as exc:
        assert exc.error.status == 404 and exc.error.code == "tool_not_found", exc.error
    else:
        raise AssertionError("an MCP call with no server registered was answered")
    assert side.caller is None and not sdk(), sdk()

    # A deletion of a server this process never had loads nothing either.
    side._server_changed("gone", None, None)
    assert side.caller is None and not sdk(), sdk()

    # The first server registered brings the SDK, and the side's caller.
    server = McpServer(name="demo-tools", urls=["http://127.0.0.1:1/mcp"])
    side.servers.items["demo-tools"] = server
    side._server_changed("demo-tools", None, server)
    assert side.caller is not None and side.keeper is not None and side.pool is not None
    assert "mcp" in sys.modules and any(m.startswith("pydantic") for m in sys.modules)
    """)
