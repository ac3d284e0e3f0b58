"""`make bench-mcp`: what the MCP gateway costs, in one run on this machine.

The gateway runs as `sluice up` runs it (every process the supervisor
starts, events into the embedded ClickHouse) with the mock upstream, whose
MCP server (``/mcp``, the SDK's Streamable HTTP server, one session per
``initialize``) is registered as ``demo-tools``. wrk drives ``tools/call``
of ``echo`` by POST, JSON-RPC as an MCP client sends it after its
handshake: each request names one of the sessions opened beforehand
(``Mcp-Session-Id``), through the gateway (``demo-tools__echo`` at
``/mcp``) and directly against the mock (``echo`` at its ``/mcp``).

Measured:

1. the p50 of a tool call at one session, gateway against direct (the
   added ms);
2. tool calls per second at 64 concurrent sessions (64 connections, each
   request naming one of 64 sessions), both, and their ratio;
3. memory per open MCP session: the RSS of the ingress processes with no
   session open and with 1,000 open (each an ``initialize`` and its
   ``notifications/initialized`` on a keep-alive connection left open, as
   an idle client holds it), and the nats-server's (the gateway keeps its
   sessions in the KV bucket ``sluice_mcp_sessions``).

Each call is counted by the mock too: ``upstream_calls`` of a run is what
its ``/mock/mcp/stats`` counted during it, which must match what wrk saw
answered (a JSON-RPC error also answers 200; a call the gateway refused
never reaches the mock).

    python -m loadtest.mcp_bench [--duration 10] [--sessions 1000] [--out loadtest/results/mcp_bench.json]

Needs wrk (`make bench-tools` installs it with apt-get when missing).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

from loadtest.bench import breakdown, rss_mb, run_wrk, write_results
from schemas.control import ApiKey
from services.cli.layout import Layout
from services.cli.nats_server import free_port
from services.cli.supervisor import Supervisor

KEY = "sk-bench-mcp-0123456789"
SERVER = "demo-tools"
TOOL = "echo"
ARGUMENTS = {"text": "Sluice carries this tool call through the gateway and back."}
PROTOCOL = "2025-11-25"
ACCEPT = "application/json, text/event-stream"
CONCURRENCY = 64

CONFIG = """
[gateway]
request_timeout_s = 30
max_body_bytes = 1048576

[[tenants]]
id = "bench"
mcp_tools = ["{server}__*"]

[[mcp_servers]]
name = "{server}"
transport = "http"
urls = ["http://127.0.0.1:{mock}/mcp"]
timeout_s = 30
"""

# Each request names a session of ``sessions`` in turn (each wrk thread keeps its own turn).
LUA = """
local sessions = {sessions}
local body = {body}
local n = 0
request = function()
  n = n + 1
  local headers = {{}}
  headers["Content-Type"] = "application/json"
  headers["Accept"] = "{accept}"
  headers["Authorization"] = "Bearer {key}"
  headers["Mcp-Protocol-Version"] = "{protocol}"
  headers["Mcp-Session-Id"] = sessions[(n % #sessions) + 1]
  return wrk.format("POST", nil, headers, body)
end
"""


def rpc(method: str, params: dict | None = None, rpc_id: int | None = 1) -> dict:
    doc: dict = {"jsonrpc": "2.0", "method": method}
    if rpc_id is not None:
        doc["id"] = rpc_id
    if params is not None:
        doc["params"] = params
    return doc


INITIALIZE = rpc(
    "initialize",
    {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "sluice-mcp-bench", "version": "1"}},
)
INITIALIZED = rpc("notifications/initialized", rpc_id=None)


def headers(session_id: str = "") -> dict[str, str]:
    out = {
        "content-type": "application/json",
        "accept": ACCEPT,
        "authorization": f"Bearer {KEY}",
        "mcp-protocol-version": PROTOCOL,
    }
    if session_id:
        out["mcp-session-id"] = session_id
    return out


def message_of(resp: httpx.Response) -> dict:
    """The JSON-RPC answer: a JSON body, or the message of an SSE stream."""
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in resp.text.splitlines() if line.startswith("data:") and line[5:].strip()]
        return json.loads(data[-1])
    return resp.json()


def open_sessions(url: str, count: int) -> list[str]:
    """``count`` MCP sessions (handshake done), by their ids."""
    out = []
    with httpx.Client(timeout=30) as client:
        for _ in range(count):
            resp = client.post(url, json=INITIALIZE, headers=headers())
            resp.raise_for_status()
            session_id = resp.headers["mcp-session-id"]
            client.post(url, json=INITIALIZED, headers=headers(session_id)).raise_for_status()
            out.append(session_id)
    return out


def check_call(url: str, session_id: str, tool: str) -> None:
    """One call before wrk repeats it: an error would make fast, meaningless numbers."""
    params = {"name": tool, "arguments": ARGUMENTS}
    resp = httpx.post(url, json=rpc("tools/call", params), headers=headers(session_id), timeout=30)
    answer = message_of(resp) if resp.status_code == 200 else {"error": resp.text[:300]}
    content = answer.get("result", {}).get("content") or [{}]
    if content[0].get("text") != ARGUMENTS["text"]:
        raise RuntimeError(f"{url} answered tools/call {tool} with {resp.status_code}: {json.dumps(answer)[:500]}")


def upstream_calls(mock: int) -> int:
    return httpx.get(f"http://127.0.0.1:{mock}/mock/mcp/stats", timeout=10).json()["calls"].get(TOOL, 0)


def write_script(path: Path, sessions: list[str], tool: str) -> Path:
    body = json.dumps(rpc("tools/call", {"name": tool, "arguments": ARGUMENTS}))
    lua_sessions = "{" + ", ".join(json.dumps(s) for s in sessions) + "}"
    path.write_text(LUA.format(sessions=lua_sessions, body=json.dumps(body), accept=ACCEPT, key=KEY, protocol=PROTOCOL))
    return path


def ingress_rss_mb(sup: Supervisor) -> float:
    return sum(rss_mb(pid) for name, pid in sup.pids().items() if name.startswith("ingress"))


def nats_rss_mb(sup: Supervisor) -> float:
    return sum(rss_mb(pid) for name, pid in sup.pids().items() if name.startswith("nats"))


async def hold_sessions(url: str, count: int, measure: asyncio.Event, measured: asyncio.Event) -> int:
    """Open ``count`` sessions, each on a connection of its own, kept open
    until ``measured``; the number opened."""
    gate = asyncio.Semaphore(CONCURRENCY)  # the handshakes so many at a time; the connections all stay open
    clients: list[aiohttp.ClientSession] = []
    opened = 0

    async def one() -> None:
        nonlocal opened
        # A client of its own per session, as each agent has: no connection shared between sessions.
        own = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1, keepalive_timeout=600), timeout=aiohttp.ClientTimeout(total=60)
        )
        clients.append(own)
        async with gate:
            async with own.post(url, json=INITIALIZE, headers=headers()) as resp:
                resp.raise_for_status()
                session_id = resp.headers["mcp-session-id"]
                await resp.read()
            async with own.post(url, json=INITIALIZED, headers=headers(session_id)) as resp:
                resp.raise_for_status()
                await resp.read()
        opened += 1

    try:
        await asyncio.gather(*(one() for _ in range(count)))
        measure.set()
        await measured.wait()
    finally:
        for own in clients:
            await own.close()
    return opened


def session_memory(url: str, sup: Supervisor, count: int) -> dict:
    """RSS of the ingress processes (and nats-server) with none and with ``count`` sessions open."""

    def settle() -> None:
        gc.collect()
        time.sleep(2)

    # Warm the paths a session takes (first-use allocations are no session's).
    asyncio.run(_hold_briefly(url, 50, sup))
    settle()
    before = {"ingress_mb": round(ingress_rss_mb(sup), 1), "nats_mb": round(nats_rss_mb(sup), 1)}

    async def run() -> tuple[int, dict]:
        measure, measured = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(hold_sessions(url, count, measure, measured))
        await measure.wait()
        await asyncio.sleep(2)
        after = {"ingress_mb": round(ingress_rss_mb(sup), 1), "nats_mb": round(nats_rss_mb(sup), 1)}
        measured.set()
        return await task, after

    opened, after = asyncio.run(run())
    per_kb = {
        k.replace("_mb", "_kb_per_session"): round((after[k] - before[k]) * 1024 / max(1, opened), 1) for k in before
    }
    return {"sessions": opened, "before": before, "after": after, **per_kb}


async def _hold_briefly(url: str, count: int, sup: Supervisor) -> None:
    measure, measured = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(hold_sessions(url, count, measure, measured))
    await measure.wait()
    measured.set()
    await task


def measure(home: Path, duration: int, session_count: int) -> dict:
    mock = free_port()
    (home / "sluice.toml").write_text(CONFIG.format(mock=mock, server=SERVER))
    layout = Layout(
        home=home, config=home / "sluice.toml", nats_port=free_port(), http_port=free_port(), mock_port=mock
    )
    sup = Supervisor(layout, extra_keys={KEY: ApiKey(id="bench", tenant_id="bench")})
    print(f"starting the gateway in {home} ...", flush=True)
    sup.start()
    result: dict = {"runs": {}}
    try:
        gateway = f"http://127.0.0.1:{layout.http_port}/mcp"
        direct = f"http://127.0.0.1:{mock}/mcp"
        tools = {"gateway": f"{SERVER}__{TOOL}", "direct": TOOL}
        urls = {"gateway": gateway, "direct": direct}
        wait_listed(gateway)
        pids = sup.pids()
        watched = {"gateway": pids, "direct": {"mock-upstream": pids["mock-upstream"]}}

        # Memory first: the load runs after would leave the allocator holding room a session fits in.
        print(f"opening {session_count} sessions at the gateway ...", flush=True)
        result["session_memory"] = session_memory(gateway, sup, session_count)
        print(f"  {json.dumps(result['session_memory'])}", flush=True)

        sessions = {target: open_sessions(url, CONCURRENCY) for target, url in urls.items()}
        for target in urls:
            check_call(urls[target], sessions[target][0], tools[target])
        admin = str(sup.creds_path("admin")) if layout.auth else None
        for c in (1, CONCURRENCY):
            for target in ("direct", "gateway"):
                script = write_script(home / f"{target}-{c}.lua", sessions[target][:c], tools[target])
                run_wrk(urls[target], script, c, 2, watched[target])  # warm-up
                calls_before, since = upstream_calls(mock), time.time_ns()
                r = run_wrk(urls[target], script, c, duration, watched[target])
                time.sleep(0.5)  # the calls still in flight at wrk's end reach the mock
                r["upstream_calls"] = upstream_calls(mock) - calls_before
                if target == "gateway" and c == 1:
                    r["breakdown_ms"] = breakdown(layout.nats_url, since, time.time_ns(), admin)
                name = f"{target} c={c}"
                result["runs"][name] = r
                print(
                    f"  {name:12} {r['rps']:>8.0f} calls/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                    f"errors {r['errors']}  answered {r['requests']}  upstream calls {r['upstream_calls']}",
                    flush=True,
                )
    finally:
        sup.stop()
    return result


def wait_listed(url: str, timeout: float = 60) -> None:
    """Until the provider stage has listed the mock's tools and the ingress mirrors them."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            resp = httpx.post(url, json=rpc("tools/list"), headers=headers(), timeout=10)
            if resp.status_code == 200 and message_of(resp).get("result", {}).get("tools"):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the gateway listed no tools after {timeout}s")
        time.sleep(0.3)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def figures(results: dict) -> dict:
    runs, mem = results["runs"], results["session_memory"]
    g1, d1 = runs["gateway c=1"], runs["direct c=1"]
    g64, d64 = runs[f"gateway c={CONCURRENCY}"], runs[f"direct c={CONCURRENCY}"]
    return {
        "p50_ms_c1": {"gateway": g1["p50_ms"], "direct": d1["p50_ms"], "added": round(g1["p50_ms"] - d1["p50_ms"], 3)},
        f"calls_per_s_c{CONCURRENCY}": {"gateway": g64["rps"], "direct": d64["rps"]},
        "ratio_gateway_to_direct": _ratio(g64["rps"], d64["rps"]),
        "gateway_cpu_us_per_call_c64": round(sum(g64["cpu_us_per_request"].values()), 1),
        "ingress_kb_per_session": mem["ingress_kb_per_session"],
        "nats_kb_per_session": mem["nats_kb_per_session"],
    }


def summary(results: dict) -> str:
    f, runs, mem = results["summary"], results["runs"], results["session_memory"]
    p50 = f["p50_ms_c1"]
    rps = f[f"calls_per_s_c{CONCURRENCY}"]
    lines = [
        "",
        f"tools/call {TOOL}, p50 at 1 session: gateway {p50['gateway']:.2f} ms, direct {p50['direct']:.2f} ms, "
        f"added {p50['added']:.2f} ms",
        f"tool calls/s at {CONCURRENCY} sessions: gateway {rps['gateway']:.0f}, direct {rps['direct']:.0f} "
        f"(gateway/direct {f['ratio_gateway_to_direct']}); gateway CPU {f['gateway_cpu_us_per_call_c64']:.0f} µs/call",
        f"memory per open MCP session ({mem['sessions']} open): ingress {mem['ingress_kb_per_session']} KB "
        f"({mem['before']['ingress_mb']} -> {mem['after']['ingress_mb']} MB), nats-server "
        f"{mem['nats_kb_per_session']} KB ({mem['before']['nats_mb']} -> {mem['after']['nats_mb']} MB)",
    ]
    for name, r in runs.items():
        if r["requests"] and abs(r["upstream_calls"] - r["requests"]) > r["requests"] * 0.01 + CONCURRENCY:
            lines.append(f"WARNING {name}: wrk saw {r['requests']} answers, the mock {r['upstream_calls']} calls")
    errors = {name: r["errors"] for name, r in runs.items() if r["errors"]}
    lines.append(f"errors: {errors or 'none'}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.mcp_bench")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (each after 2 s of warm-up)")
    parser.add_argument("--sessions", type=int, default=1000, help="sessions held open for the memory measure")
    parser.add_argument("--out", default="loadtest/results/mcp_bench.json")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk not found: `make bench-tools` installs it (apt-get install wrk)", file=sys.stderr)
        return 2
    # A connection per held session, on both ends (the gateway's processes inherit the limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * args.sessions + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard > 0 else want, hard))
    home = Path(tempfile.mkdtemp(prefix="sluice-mcp-bench-"))
    results: dict = {"cpus": os.cpu_count(), "duration_s": args.duration}
    try:
        results |= measure(home, args.duration, args.sessions)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    results["summary"] = figures(results)
    write_results(results, args.out, summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
