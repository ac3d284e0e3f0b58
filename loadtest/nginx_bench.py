"""`make bench`: Sluice against nginx as a fixed-answer upstream, side by
side with nginx called directly, in one run on this machine.

nginx (Debian's package) answers on loopback with a fixed chat completion
(with usage) and a fixed 21-chunk SSE stream. Sluice runs as `sluice up`
runs it (every process the supervisor starts, events into the embedded
ClickHouse), with what a real deployment has on: a key with limits and a
budget, a model group of two deployments, analytics. wrk drives both
(a Lua script for the body), at 1 and at 64 connections, completions and
streams; a Python client measures the time to the first chunk at one
connection; a tenant that masks every detector is driven with a 4 KB prompt
full of PII. Reported against the targets: requests/s, added p50/p99, added
time to first chunk, streams/s, masked requests/s, the memory of all Sluice
processes together, CPU µs per request per process, and how long a
request's row takes to show in ClickHouse under full load.

    python -m loadtest.nginx_bench [--duration 10] [--out loadtest/results/nginx_bench.json]

Needs nginx and wrk (`make bench` installs them with apt-get when missing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import quantiles
from typing import Any

import aiohttp

from loadtest import lag_bench, masking_load
from loadtest.bench import BUDGET, LIMITS, LUA, breakdown, rss_mb, run_wrk, sluice_up, wait_for_port, write_results
from loadtest.privacy_bench import MASKING_TENANT
from schemas.control import ApiKey
from services.cli.layout import Layout
from services.cli.nats_server import free_port
from services.cli.supervisor import Supervisor

KEY = "sk-bench-nginx-0123456789"
MASKING_KEY = "sk-bench-nginx-masking-0123456789"
NGINX = "/usr/sbin/nginx"
CHUNKS = 21
# ~1 KB of prompt, as in the other benchmarks.
PROMPT = "Summarise the following text. " + "lorem ipsum dolor sit amet " * 36

ANSWER = {
    "id": "chatcmpl-nginx",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "A fixed answer."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 250, "completion_tokens": 21, "total_tokens": 271},
}


def sse_answer() -> str:
    """21 content chunks, a finish chunk with usage, then [DONE]."""
    base = {"id": "chatcmpl-nginx", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o-mini"}
    events = [
        base | {"choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}]} for i in range(CHUNKS)
    ]
    events.append(
        base
        | {
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 250, "completion_tokens": CHUNKS, "total_tokens": 250 + CHUNKS},
        }
    )
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {home}/nginx.pid;
error_log {home}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {home}/body;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} reuseport;
        location = /complete/v1/chat/completions {{
            default_type application/json;
            return 200 '{answer}';
        }}
        # The stream is longer than one config string may be: a file,
        # reached by a redirect that turns the POST into a GET.
        location = /stream/v1/chat/completions {{
            error_page 405 =200 /answers/stream.sse;
            return 405;
        }}
        location /answers/ {{
            internal;
            alias {home}/answers/;
            types {{ }}
            default_type text/event-stream;
        }}
{locations}
    }}
}}
"""

SLUICE_CONFIG = """
[gateway]
request_timeout_s = 30

[[tenants]]
id = "bench"
limits = {{ rpm = 1000000000, tpm = 1000000000000, max_parallel = 100000 }}
budget = {{ usd = "1000000.00", period = "monthly" }}

{masking}
{groups}
"""


def group(name: str, port: int, path: str) -> str:
    """A model group of two deployments behind the same nginx, weighted."""
    deployments = "".join(
        f"""
[[models.deployments]]
name = "{name}-{n}"
provider = "openai"
base_url = "http://127.0.0.1:{port}/{path}/v1"
upstream_model = "gpt-4o-mini"
api_key_env = ""
"""
        for n in ("a", "b")
    )
    return f'[[models]]\nname = "{name}"\nstrategy = "weighted"\n{deployments}'


@contextmanager
def nginx(home: Path, locations: str = "") -> Iterator[int]:
    """nginx on a free loopback port, stopped (by pid) on the way out;
    ``locations``: more ``location`` blocks for its server (another bench's answers)."""
    port = free_port()
    (home / "body").mkdir(parents=True, exist_ok=True)
    (home / "answers").mkdir(exist_ok=True)
    (home / "answers" / "stream.sse").write_text(sse_answer())
    conf = home / "nginx.conf"
    # As root, nginx's worker would run as nobody, who cannot read a private temporary directory.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_CONF.format(user=user, home=home, port=port, answer=json.dumps(ANSWER), locations=locations))
    proc = subprocess.Popen([NGINX, "-p", str(home), "-c", str(conf)], stderr=subprocess.PIPE)
    wait_for_port(port, proc, "nginx")
    try:
        yield port
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def chat_body(model: str, stream: bool, text: str = PROMPT) -> str:
    doc: dict = {"model": model, "messages": [{"role": "user", "content": text}]}
    if stream:
        doc |= {"stream": True, "stream_options": {"include_usage": True}}
    return json.dumps(doc)


async def first_chunk_ms(url: str, body: str, headers: dict[str, str], n: int) -> list[float]:
    """Time from sending to the first SSE data line, one request at a time."""
    out = []
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            start = time.perf_counter()
            async with s.post(url, data=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                async for line in resp.content:
                    if line.startswith(b"data: "):
                        out.append((time.perf_counter() - start) * 1000)
                        break
                await resp.read()
    return out


def pct(values: list[float]) -> dict[str, float]:
    cuts = quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 3), "p99": round(cuts[98], 3)}


@contextmanager
def sluice(home: Path, ngx: int, **layout_options: Any) -> Iterator[tuple[Layout, Supervisor]]:
    """Sluice as `sluice up` runs it, its models behind nginx on port
    ``ngx``, with the bench's keys; stopped on the way out."""
    groups = group("bench-model", ngx, "complete") + "\n" + group("bench-stream", ngx, "stream")
    keys = {
        KEY: ApiKey(id="bench", tenant_id="bench", limits=LIMITS, budget=BUDGET),
        MASKING_KEY: ApiKey(id="masking", tenant_id="masking"),
    }
    config = SLUICE_CONFIG.format(masking=MASKING_TENANT, groups=groups)
    with sluice_up(home, config, keys, **layout_options) as started:
        yield started


def measure(layout_name: str, layout_options: dict, ngx: int, home: Path, duration: int) -> dict:
    """One layout of Sluice, every measure, against nginx direct in the same run."""
    with sluice(home, ngx, **layout_options) as (layout, sup):
        return _measure(layout_name, layout_options, layout, sup, ngx, home, duration)


def _measure(
    layout_name: str, layout_options: dict, layout: Layout, sup: Supervisor, ngx: int, home: Path, duration: int
) -> dict:
    result: dict = {"layout": layout_name, "options": layout_options, "runs": {}}
    pids = sup.pids()
    time.sleep(5)  # at rest: started, every process past its first beats, no request yet
    result["rss_mb_at_rest"] = {name: round(rss_mb(pid), 1) for name, pid in pids.items()}
    result["rss_mb_at_rest_total"] = round(sum(result["rss_mb_at_rest"].values()), 1)
    print(f"  memory at rest: {result['rss_mb_at_rest_total']} MB {result['rss_mb_at_rest']}", flush=True)
    admin = str(sup.creds_path("admin"))
    gw = f"http://127.0.0.1:{layout.http_port}/v1/chat/completions"
    direct = {False: f"http://127.0.0.1:{ngx}/complete/v1/chat/completions",
              True: f"http://127.0.0.1:{ngx}/stream/v1/chat/completions"}  # fmt: skip
    for stream in (False, True):
        model = "bench-stream" if stream else "bench-model"
        script = home / f"chat-{stream}.lua"
        script.write_text(LUA.format(body=json.dumps(chat_body(model, stream)), key=KEY))
        for target, url, watched in (("direct", direct[stream], {}), ("sluice", gw, pids)):
            for c in (1, 64):
                run_wrk(url, script, c, 2, watched)  # warm-up
                since = time.time_ns()
                r = run_wrk(url, script, c, duration, watched)
                name = f"{target} {'stream' if stream else 'complete'} c={c}"
                result["runs"][name] = r
                if target == "sluice" and c == 1:  # where the time goes, from the requests rows
                    r["breakdown_ms"] = breakdown(layout.nats_url, since, time.time_ns(), admin)
                print(
                    f"  {name:24} {r['rps']:>8.0f}/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms"
                    f"  errors {r['errors']}",
                    flush=True,
                )
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    body = chat_body("bench-stream", True)
    for target, url in (("direct", direct[True]), ("sluice", gw)):
        asyncio.run(first_chunk_ms(url, body, headers, 20))
        result[f"ttft_ms {target}"] = pct(asyncio.run(first_chunk_ms(url, body, headers, 300)))
    print(f"  first chunk at c=1: direct {result['ttft_ms direct']}, sluice {result['ttft_ms sluice']}")

    masking = masking_load.script(home / "masking.lua", MASKING_KEY, "bench-model")
    run_wrk(gw, masking, 64, 2, pids)
    result["runs"]["sluice masking c=64"] = r = run_wrk(gw, masking, 64, duration, pids)
    print(f"  masking 5 turns c=64      {r['rps']:>8.0f}/s  p50 {r['p50_ms']:.2f} ms  errors {r['errors']}")
    # A third of the connections mask, the rest are the ordinary tenant's completions.
    loads = {"plain": (home / "chat-False.lua", 43), "masking": (masking, 21)}
    result["mixed c=64"] = mixed = masking_load.together(gw, loads, duration, pids)
    for name in loads:
        r = mixed[name]
        print(
            f"  mixed: {name:10} {r['rps']:>8.0f}/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms"
            f"  share {r['share']:.2f}  errors {r['errors']}",
            flush=True,
        )

    result["rss_mb"] = {name: round(rss_mb(pid), 1) for name, pid in pids.items()}
    result["rss_mb_total"] = round(sum(result["rss_mb"].values()), 1)
    result["row_lag_ms"] = row_lag(layout, sup, gw, home, duration)
    print(f"  row visible after its response (full load): {result['row_lag_ms']}", flush=True)
    return result


def row_lag(layout: Layout, sup: Supervisor, url: str, home: Path, duration: int) -> dict:
    """The time from a response to its row in ClickHouse, while wrk keeps
    the gateway at full load and a sampler sends its own requests among it
    (lag_bench's watcher: it asks the sink over NATS, as any tool would)."""
    script = home / "lag.lua"
    script.write_text(LUA.format(body=json.dumps(chat_body("bench-model", False)), key=KEY))
    load = subprocess.Popen(
        ["wrk", "-t2", "-c60", f"-d{duration + 10}s", "-s", str(script), url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(2)  # at full load before the sample starts
        args = argparse.Namespace(rate=50, seconds=duration, poll_ms=50, in_flight=4)
        found = asyncio.run(
            lag_bench.run(
                layout.nats_url, str(sup.creds_path("admin")), url, args, KEY, chat_body("bench-model", False)
            )
        )
        return found["lag_ms"] | {"rows_seen": found["rows_seen"], "never_seen": found["never_seen"]}
    finally:
        load.kill()
        load.wait()


# What `sluice up` runs (policy, routing and provider in one process), and
# every stage in its own process (`sluice up --separate-stages`).
LAYOUTS: dict[str, dict[str, Any]] = {"default": {}, "separate": {"separate_stages": True}}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.nginx_bench")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--out", default="loadtest/results/nginx_bench.json")
    parser.add_argument("--layout", choices=[*LAYOUTS, "both"], default="both")
    args = parser.parse_args()
    for tool in (NGINX, "wrk"):
        if not shutil.which(tool):
            print(f"{tool} not found: `make bench` installs it (apt-get install nginx wrk)", file=sys.stderr)
            return 2
    root = Path(tempfile.mkdtemp(prefix="sluice-nginx-bench-"))
    results: dict = {"cpus": os.cpu_count(), "duration_s": args.duration, "layouts": []}
    try:
        with nginx(root / "nginx") as ngx:
            for name, options in LAYOUTS.items():
                if args.layout not in (name, "both"):
                    continue
                results["layouts"].append(measure(name, options, ngx, root / name, args.duration))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    write_results(results, args.out, summary(results))
    return 0


TARGETS = (
    ("non-streaming, 64 connections", ">= 5,000 requests/s"),
    ("added p50 at 1 connection", "<= 0.8 ms (p99 <= 2.5 ms)"),
    ("streaming (21 chunks), 64 connections", ">= 2,500 streams/s"),
    ("added time to first chunk, 1 connection", "<= 1.0 ms"),
    ("masking, 4 KB five-turn prompts, 64", ">= 2,500 requests/s"),
    ("mixed: 1/3 of connections mask, 64", "plain p99 as when alone"),
    ("memory of all Sluice processes", "<= 1 GB"),
    ("row visible after its response, p99", "<= 2 s"),
)


def summary(results: dict) -> str:
    lines = [""]
    for lay in results["layouts"]:
        runs = lay["runs"]
        d1, s1 = runs["direct complete c=1"], runs["sluice complete c=1"]
        s64, st64 = runs["sluice complete c=64"], runs["sluice stream c=64"]
        tt_d, tt_s = lay["ttft_ms direct"], lay["ttft_ms sluice"]
        mixed = lay["mixed c=64"]
        got = (
            f"{s64['rps']:.0f}/s, {s64['errors']} errors (nginx direct {runs['direct complete c=64']['rps']:.0f}/s)",
            f"+{s1['p50_ms'] - d1['p50_ms']:.2f} ms (p99 +{s1['p99_ms'] - d1['p99_ms']:.2f} ms)",
            f"{st64['rps']:.0f}/s, {st64['errors']} errors",
            f"+{tt_s['p50'] - tt_d['p50']:.2f} ms (p99 +{tt_s['p99'] - tt_d['p99']:.2f} ms)",
            f"{runs['sluice masking c=64']['rps']:.0f}/s, {runs['sluice masking c=64']['errors']} errors",
            f"plain {mixed['plain']['rps']:.0f}/s p99 {mixed['plain']['p99_ms']:.1f} ms (alone "
            f"{s64['p99_ms']:.1f}), masking {mixed['masking']['rps']:.0f}/s p99 {mixed['masking']['p99_ms']:.1f} ms",
            f"{lay['rss_mb_at_rest_total']:.0f} MB at rest, {lay['rss_mb_total']:.0f} MB after the loads",
            f"{lay['row_lag_ms'].get('p99', '?')} ms",
        )
        lines.append(f"layout {lay['layout']}:")
        lines.append(f"  {'measure':42} {'target':26} this run")
        for (measure_name, target), value in zip(TARGETS, got, strict=True):
            lines.append(f"  {measure_name:42} {target:26} {value}")
        lines.append("  CPU µs per request, by process:")
        for name in ("sluice complete c=64", "sluice stream c=64", "sluice masking c=64"):
            cpu = runs[name]["cpu_us_per_request"]
            lines.append(
                f"    {name:22} total {sum(cpu.values()):>6.0f}  " + "  ".join(f"{k}={v:.0f}" for k, v in cpu.items())
            )
        lines.append("  Median ms per part at 1 connection (requests rows):")
        for name in ("sluice complete c=1", "sluice stream c=1"):
            parts = {k: v for k, v in runs[name].get("breakdown_ms", {}).items() if k not in ("stream", "requests")}
            lines.append(f"    {name:22} " + "  ".join(f"{k.removesuffix('_ms')}={v}" for k, v in parts.items()))
        lines.append("  RSS MB at rest: " + "  ".join(f"{k}={v:.0f}" for k, v in lay["rss_mb_at_rest"].items()))
        lines.append("  RSS MB after the loads: " + "  ".join(f"{k}={v:.0f}" for k, v in lay["rss_mb"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
