"""Gateway vs. direct upstream, in one run on this machine.

Starts the embedded gateway (nats-server, every stage, ingress, mock upstream)
on free loopback ports, then drives it and the mock upstream directly with wrk:
non-streaming and streaming, at concurrency 1 (latency) and 64 (throughput).
Reports p50/p99, requests/s, errors, and per process CPU time per request and
RSS, read from /proc.

    python -m loadtest.bench [--duration 10] [--upstream openai|anthropic|gemini]

``--upstream`` picks the API shape the mock answers in. The gateway is always
called in OpenAI's shape, so with anthropic or gemini every request and chunk
is translated both ways; "direct" then calls the mock in that shape.

Needs wrk (Debian: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from schemas.control import ApiKey, Budget, Limits
from services.cli.layout import Layout, parse_replicas
from services.cli.named_query import query
from services.cli.nats_server import free_port
from services.cli.supervisor import Supervisor

KEY = "sk-bench-0123456789"
# Far above what a run reaches: nothing is refused, and the counters still work on every request.
LIMITS = Limits(rpm=10**9, tpm=10**12, max_parallel=100_000)
BUDGET = Budget(limit_pico_usd=10**6 * 10**12, period="monthly")
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONFIG = """
[gateway]
request_timeout_s = 30
[[tenants]]
id = "bench"
[[models]]
name = "bench-model"
provider = "{provider}"
base_url = "http://127.0.0.1:{mock}{base_path}"
upstream_model = "{model}"
"""
# upstream shape -> (provider, base path, upstream model)
UPSTREAMS = {
    "openai": ("openai", "/v1", "gpt-4o-mini"),
    "anthropic": ("anthropic", "", "claude-sonnet-4-20250514"),
    "gemini": ("gemini", "", "gemini-2.5-flash"),
}
LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


# ~1 KB of prompt, as in DESIGN.md's measurements.
PROMPT = "Summarise the following text. " + "lorem ipsum dolor sit amet " * 36


def body(stream: bool) -> str:
    return json.dumps(
        {"model": "bench-model", "stream": stream, "messages": [{"role": "user", "content": PROMPT}]}
        | ({"stream_options": {"include_usage": True}} if stream else {})
    )


def direct_request(upstream: str, mock: int, stream: bool) -> tuple[str, str]:
    """The URL and body that ask the mock the same question in the upstream's own shape."""
    _, base_path, model = UPSTREAMS[upstream]
    root = f"http://127.0.0.1:{mock}{base_path}"
    if upstream == "anthropic":
        doc = {"model": model, "max_tokens": 1024, "stream": stream, "messages": [{"role": "user", "content": PROMPT}]}
        return f"{root}/v1/messages", json.dumps(doc)
    if upstream == "gemini":
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        doc = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
        return f"{root}/v1beta/models/{model}:{method}", json.dumps(doc)
    return f"{root}/chat/completions", body(stream)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(out: str) -> dict:
    lat = {p: _ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.M)}
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
    return {
        "requests": total,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": lat.get("50"),
        "p99_ms": lat.get("99"),
        "errors": errors,
    }


@contextlib.contextmanager
def sluice_up(
    home: Path, config: str, keys: dict[str, ApiKey], mock_port: int | None = None, **layout: Any
) -> Iterator[tuple[Layout, Supervisor]]:
    """Sluice as `sluice up` runs it, in ``home`` with ``config`` (the
    sluice.toml text), on free loopback ports, with ``keys`` and ``layout``
    options (replicas, separate stages); stopped on the way out."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "sluice.toml").write_text(config)
    options = Layout(
        home=home,
        config=home / "sluice.toml",
        nats_port=free_port(),
        http_port=free_port(),
        mock_port=mock_port,
        **layout,
    )
    sup = Supervisor(options, extra_keys=keys)
    print(f"starting Sluice in {home} ...", flush=True)
    sup.start()
    try:
        yield options, sup
    finally:
        sup.stop()


@contextlib.contextmanager
def embedded_gateway(config: str, key: str, prefix: str, **layout: Any) -> Iterator[tuple[Layout, Supervisor]]:
    """The whole gateway on free loopback ports, with ``config`` (formatted
    with {mock}, the mock upstream's port), one key of tenant "bench" and
    ``layout`` options (replicas); stopped, and its directory removed, on the
    way out."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    mock_port = free_port()
    keys = {key: ApiKey(id="bench", tenant_id="bench")}
    try:
        with sluice_up(home, config.format(mock=mock_port), keys, mock_port, **layout) as started:
            yield started
    finally:
        shutil.rmtree(home, ignore_errors=True)


def wait_for_port(port: int, proc: subprocess.Popen, what: str, seconds: float = 10) -> None:
    """Until something listens on loopback ``port``; an error (with what
    ``proc`` said, if its stderr is a pipe) if it exits or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                said = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                raise RuntimeError(f"{what} did not start: {said}") from exc
            time.sleep(0.05)


def write_results(results: dict, out: str, summary: str) -> Path:
    """Keep a run's results as JSON and print its summary."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(summary)
    return path


def run_wrk(url: str, script: Path, concurrency: int, duration: int, pids: dict[str, int]) -> dict:
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    threads = min(2, concurrency)
    cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = parse_wrk(out)
    n = max(1, result["requests"])
    result["cpu_us_per_request"] = {
        name: round((cpu_seconds(pid) - before[name]) / n * 1e6, 1) for name, pid in pids.items()
    }
    result["rss_mb"] = {name: round(rss_mb(pid), 1) for name, pid in pids.items()}
    return result


def breakdown(nats_url: str, since_ns: int, until_ns: int, creds: str | None) -> dict:
    """Median time per part, from the gateway's own ClickHouse rows."""
    time.sleep(2)  # let the sink write the run's last batch
    params = {"since_ns": since_ns, "until_ns": until_ns}
    result = asyncio.run(query("breakdown", params, nats_url, creds=creds))
    if result.get("error") or not result["rows"]:
        return {"error": result.get("error") or "no rows"}
    return dict(zip(result["columns"], result["rows"][0], strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--replicas", type=parse_replicas, default={}, help="e.g. provider=2,ingress=2")
    parser.add_argument("--upstream", choices=sorted(UPSTREAMS), default="openai")
    parser.add_argument("--no-auth", action="store_true", help="NATS without authorization, to measure its cost")
    parser.add_argument("--out", default="loadtest/results/bench.json")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    home = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    mock = free_port()
    provider, base_path, model = UPSTREAMS[args.upstream]
    (home / "sluice.toml").write_text(CONFIG.format(mock=mock, provider=provider, base_path=base_path, model=model))
    layout = Layout(
        home=home,
        config=home / "sluice.toml",
        nats_port=free_port(),
        http_port=free_port(),
        mock_port=mock,
        replicas=args.replicas,
        auth=not args.no_auth,
    )
    sup = Supervisor(layout, extra_keys={KEY: ApiKey(id="bench", tenant_id="bench")})
    print(f"starting the gateway in {home} ...", flush=True)
    sup.start()
    admin = str(sup.creds_path("admin")) if layout.auth else None
    results: dict = {
        "duration_s": args.duration,
        "cpus": os.cpu_count(),
        "upstream": args.upstream,
        "auth": layout.auth,
        "runs": [],
    }
    try:
        pids = sup.pids()
        direct_pids = {"mock-upstream": pids["mock-upstream"]}
        for stream in (False, True):
            direct_url, direct_body = direct_request(args.upstream, mock, stream)
            scripts = {}
            for target, payload in (("direct", direct_body), ("sluice", body(stream))):
                scripts[target] = home / f"{target}-{stream}.lua"
                scripts[target].write_text(LUA.format(body=json.dumps(payload), key=KEY))
            for target, url, watched in (
                ("direct", direct_url, direct_pids),
                ("sluice", f"http://127.0.0.1:{layout.http_port}/v1/chat/completions", pids),
            ):
                script = scripts[target]
                for concurrency in (1, args.concurrency):
                    run_wrk(url, script, concurrency, 2, watched)  # warm-up
                    since = time.time_ns()
                    r = run_wrk(url, script, concurrency, args.duration, watched)
                    r |= {"target": target, "stream": stream, "concurrency": concurrency}
                    if target == "sluice":
                        r["breakdown_ms"] = breakdown(layout.nats_url, since, time.time_ns(), admin)
                    results["runs"].append(r)
                    print(
                        f"{target:6} stream={stream!s:5} c={concurrency:<3} rps={r['rps']:>8.0f} "
                        f"p50={r['p50_ms']:.2f}ms p99={r['p99_ms']:.2f}ms errors={r['errors']}",
                        flush=True,
                    )
                    time.sleep(1)
    finally:
        sup.stop()
        shutil.rmtree(home, ignore_errors=True)
    out = write_results(results, args.out, summary(results))
    print(f"\nfull results: {out}")
    return 0


def summary(results: dict) -> str:
    runs = {(r["target"], r["stream"], r["concurrency"]): r for r in results["runs"]}
    lines = ["", "mode       c   direct rps  sluice rps  direct p50/p99 ms   sluice p50/p99 ms   added p50 ms"]
    for stream in (False, True):
        for c in sorted({r["concurrency"] for r in results["runs"]}):
            d, s = runs[("direct", stream, c)], runs[("sluice", stream, c)]
            lines.append(
                f"{'stream' if stream else 'complete':9} {c:>3} {d['rps']:>11.0f} {s['rps']:>11.0f} "
                f"{d['p50_ms']:>8.2f}/{d['p99_ms']:<8.2f} {s['p50_ms']:>8.2f}/{s['p99_ms']:<8.2f} "
                f"{s['p50_ms'] - d['p50_ms']:>12.2f}"
            )
    lines.append("\nCPU µs per request, by process (sluice runs):")
    for r in results["runs"]:
        if r["target"] == "sluice":
            mode = f"{'stream' if r['stream'] else 'complete'} c={r['concurrency']}"
            lines.append(f"  {mode:14} " + "  ".join(f"{k}={v}" for k, v in r["cpu_us_per_request"].items()))
    lines.append("\nMedian ms per part, from the requests table (sluice runs):")
    for r in results["runs"]:
        if r["target"] == "sluice":
            mode = f"{'stream' if r['stream'] else 'complete'} c={r['concurrency']}"
            parts = {k: v for k, v in r["breakdown_ms"].items() if k not in ("stream", "requests")}
            lines.append(f"  {mode:14} " + "  ".join(f"{k.removesuffix('_ms')}={v}" for k, v in parts.items()))
    last = results["runs"][-1]
    lines.append("RSS MB at the end: " + "  ".join(f"{k}={v}" for k, v in last["rss_mb"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
