"""`make bench-live`: issue 29's "thousand live streams". N streams held
open at once through Sluice, against the same streams direct, in one run.

A real model sends its tokens spaced out, so a gateway holds many streams
open for seconds each. The upstream (``live_streams/upstream.c``) answers
every chat completion with 200 chunks 50 ms apart, each carrying the time it
was written; the client (``live_streams/client.c``) holds N keep-alive
connections, each running one streamed request after another, and takes
each chunk's delay as the time it read it minus that. Both are C, one
thread on epoll: a Python client and mock alone added 10 ms at p50 with 400
streams, nothing between them.

For each N: the client runs direct against the upstream, then through
Sluice (started as ``nginx_bench`` starts it: every process ``sluice up``
runs, a key with limits far above the run, one model whose deployment is
the upstream as an OpenAI-compatible provider). Reported: the delay per
chunk added by Sluice (p50, p99, max: through Sluice minus direct), the
memory of all Sluice processes per open stream (RSS summed while the N
streams are open, minus at rest, over N), CPU µs per chunk per Sluice
process, streams that brought fewer events than the upstream sent (chunks
merged or lost) and errors; and, for the upstream, the most streams it held
open at once (what the gateway really held) and how late its timer wrote.

    python -m loadtest.live_streams_bench [--streams 250,500,1000,2000] [--duration 60]

Needs a C compiler (``cc``); the tools are built into live_streams/build/.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loadtest.bench import BUDGET, LIMITS, cpu_seconds, rss_mb, sluice_up, wait_for_port, write_results
from schemas.control import ApiKey
from services.cli.layout import Layout, parse_replicas
from services.cli.nats_server import free_port
from services.cli.supervisor import Supervisor
from services.config import GatewaySettings
from services.providers.http import CONNECT_S, POOL_S, make_upstream_http

HERE = Path(__file__).resolve().parent / "live_streams"
BUILD = HERE / "build"
TOOLS = ("upstream", "client")
KEY = "sk-bench-live-0123456789"
MODEL = "bench-live"
PATH = "/v1/chat/completions"
# The provider stage's upstream pool: streams past this many per provider process wait for a pooled
# connection, and fail when none frees up in time. Read from the code, so the note stays true.
UPSTREAM_POOL: int = inspect.signature(make_upstream_http).parameters["max_connections"].default

# A chat stream's whole length counts against request_timeout_s (services/providers/request_call.py:
# the deadline is lifted at the head for REST answers only), so it is set well above a stream's
# length; stream_idle_timeout_s bounds the gap between chunks (50 ms here) and stays as shipped.
CONFIG = """
[gateway]
request_timeout_s = {request_timeout_s}

[[tenants]]
id = "bench"
limits = {{ rpm = 1000000000, tpm = 1000000000000, max_parallel = 100000 }}
budget = {{ usd = "1000000.00", period = "monthly" }}

[[models]]
name = "{model}"
provider = "openai"
base_url = "http://127.0.0.1:{port}/v1"
upstream_model = "gpt-4o-mini"
api_key_env = ""
timeout_s = 60
"""


def build(cc: str) -> dict[str, Path]:
    """Compile the upstream and the client (a second or so; always, so a stale binary never runs)."""
    BUILD.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in TOOLS:
        out[name] = BUILD / name
        subprocess.run([cc, "-O2", "-Wall", "-o", str(out[name]), str(HERE / f"{name}.c")], check=True)
    return out


def raise_nofile(streams: int) -> int:
    """Every process started from here inherits the limit: the ingress holds
    a socket per client stream, the provider one per upstream stream."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 4 * streams + 4096)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < 2 * streams + 1024:
        print(f"warning: open files limited to {want}, {streams} streams need about {2 * streams + 1024}")
    return want


@contextmanager
def upstream(binary: Path, chunks: int, interval_ms: float) -> Iterator[tuple[int, int]]:
    """The streaming upstream on a free loopback port: (port, pid); stopped on the way out."""
    port = free_port()
    cmd = [str(binary), "--port", str(port), "--chunks", str(chunks), "--interval-ms", str(interval_ms)]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc, "the upstream")
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(5)


def upstream_stats(port: int, reset: bool = False) -> dict:
    url = f"http://127.0.0.1:{port}/stats" + ("?reset=1" if reset else "")
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


@contextmanager
def sluice(home: Path, port: int, stream_s: float, replicas: dict[str, int]) -> Iterator[tuple[Layout, Supervisor]]:
    """Sluice as `sluice up` runs it (as ``nginx_bench.sluice`` starts it),
    its one model behind the upstream on ``port``; stopped on the way out."""
    timeout_s = max(120, round(6 * stream_s))
    config = CONFIG.format(request_timeout_s=timeout_s, model=MODEL, port=port)
    keys = {KEY: ApiKey(id="bench", tenant_id="bench", limits=LIMITS, budget=BUDGET)}
    with sluice_up(home, config, keys, replicas=replicas) as started:
        yield started


def rss_by_process(pids: dict[str, int]) -> dict[str, float]:
    return {name: round(rss_mb(pid), 1) for name, pid in pids.items()}


class RssSampler(threading.Thread):
    """The RSS of ``pids`` once a second between ``start_s`` and ``until_s``
    after it starts (the window where every stream is open): the sums, and
    each process's at the highest sum."""

    def __init__(self, pids: dict[str, int], start_s: float, until_s: float) -> None:
        super().__init__(daemon=True)
        self.pids, self.start_s, self.until_s = pids, start_s, until_s
        self.samples: list[float] = []
        self.peak: dict[str, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        began = time.monotonic()
        while not self.done.wait(0.2):
            now = time.monotonic() - began
            if now > self.until_s:
                return
            if now >= self.start_s and now - self.start_s >= len(self.samples):
                by_process = rss_by_process(self.pids)
                self.samples.append(round(sum(by_process.values()), 1))
                if self.samples[-1] >= max(self.samples):
                    self.peak = by_process


def run_client(
    tools: dict[str, Path],
    args: argparse.Namespace,
    n: int,
    port: int,
    sluice_pids: dict[str, int],
    up: tuple[int, int],
    duration: float | None = None,
) -> dict:
    """One run of the client; with ``sluice_pids``, through the gateway
    (``port`` is its HTTP port) with its CPU and memory watched."""
    duration = duration or args.duration
    up_port, up_pid = up
    cmd = [str(tools["client"]), "--port", str(port), "--path", PATH, "--model", MODEL, "--streams", str(n),
           "--duration", str(duration), "--ramp", str(min(args.ramp, duration / 2)), "--chunks", str(args.chunks),
           "--drain", str(args.chunks * args.interval_ms / 1000 + 20)]  # fmt: skip
    if sluice_pids:
        cmd += ["--key", KEY]
    watched = {"upstream": up_pid, **sluice_pids}
    upstream_stats(up_port, reset=True)
    before = {name: cpu_seconds(pid) for name, pid in watched.items()}
    sampler = RssSampler(sluice_pids, min(args.ramp, duration / 2) + 2, duration - 1)
    sampler.start()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 120)
    sampler.done.set()
    sampler.join()
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in watched.items()}
    result: dict[str, Any] = json.loads(proc.stdout)
    if proc.stderr:
        result["stderr"] = proc.stderr[-2000:]
    result["upstream"] = upstream_stats(up_port) | {"cpu_s_run": round(cpu.pop("upstream"), 3)}
    elapsed = result["elapsed_s"]
    # Averaged over the run, ramp and drain included; per chunk, the cost at any N.
    result["tools_cpu_pct"] = {
        "client": round(100 * result["cpu_s"] / elapsed, 1),
        "upstream": round(100 * result["upstream"]["cpu_s_run"] / elapsed, 1),
    }
    result["tools_cpu_us_per_chunk"] = {
        "client": round(result["cpu_s"] / max(1, result["chunks"]) * 1e6, 1),
        "upstream": round(result["upstream"]["cpu_s_run"] / max(1, result["chunks"]) * 1e6, 1),
    }
    if sluice_pids:
        chunks = max(1, result["chunks"])
        result["cpu_us_per_chunk"] = {name: round(s / chunks * 1e6, 1) for name, s in cpu.items()}
        result["rss_mb_open"] = sampler.samples
        result["rss_mb_open_by_process"] = sampler.peak
    return result


def describe(target: str, r: dict) -> str:
    d = r["delay_us"]
    return (
        f"  {target:6} n={r['n']:<5} chunks {r['chunks']:>8}  delay p50 {d['p50'] / 1000:.2f} p99 {d['p99'] / 1000:.2f}"
        f" max {d['max'] / 1000:.1f} ms  streams {r['streams_completed']}  short {r['short_streams']}"
        f"  errors {r['errors']}  upstream peak {r['upstream']['peak']}  cpu client {r['tools_cpu_pct']['client']}%"
        f" upstream {r['tools_cpu_pct']['upstream']}%"
    )


def added(direct: dict, through: dict) -> dict[str, float]:
    d, s = direct["delay_us"], through["delay_us"]
    return {q: round((s[q] - d[q]) / 1000, 3) for q in ("p50", "p99", "max")}


def sweep(tools: dict[str, Path], args: argparse.Namespace, up: tuple[int, int], home: Path) -> list[dict]:
    """Per N: the streams direct, then through a Sluice started for this N
    alone: its memory at rest is then its own, not what an earlier, smaller
    run left in its heaps (or the rows the sink took in since)."""
    runs: list[dict] = []
    for n in args.streams:
        run: dict[str, Any] = {"n": n}
        runs.append(run)
        run["direct"] = r = run_client(tools, args, n, up[0], {}, up)
        print(describe("direct", r), flush=True)
        if not args.direct_only:
            run |= through_sluice(tools, args, n, up, home / f"n{n}")
            run["added_delay_ms"] = added(r, run["sluice"])
    return runs


def through_sluice(tools: dict[str, Path], args: argparse.Namespace, n: int, up: tuple[int, int], home: Path) -> dict:
    stream_s = args.chunks * args.interval_ms / 1000
    with sluice(home, up[0], stream_s, args.replicas) as (layout, sup):
        pids = sup.pids()
        run_client(tools, args, 20, layout.http_port, pids, up, duration=2)  # warm-up
        time.sleep(3)
        rest = rss_by_process(pids)
        s = run_client(tools, args, n, layout.http_port, pids, up)
    print(describe("sluice", s), flush=True)
    open_by_process = s["rss_mb_open_by_process"]
    out: dict[str, Any] = {"sluice": s, "rss_mb_rest": rest, "kb_per_open_stream": None}
    if open_by_process:
        out["kb_per_open_stream"] = round((sum(open_by_process.values()) - sum(rest.values())) * 1024 / n, 1)
        out["kb_per_open_stream_by_process"] = {
            name: round((mb - rest[name]) * 1024 / n, 1) for name, mb in open_by_process.items()
        }
    return out


def check_limits(ns: list[int], replicas: dict[str, int]) -> list[str]:
    """What in the gateway as configured here would hold back or cut N streams."""
    notes = []
    settings = GatewaySettings()
    ingresses = replicas.get("ingress", 1)
    if max(ns) > settings.max_in_flight * ingresses:
        notes.append(f"ingress max_in_flight {settings.max_in_flight} x {ingresses}: streams past it get 503")
    providers = max([replicas.get(s, 1) for s in ("policy", "route", "provider")])
    if max(ns) > UPSTREAM_POOL * providers:
        notes.append(
            f"the provider's upstream pool holds {UPSTREAM_POOL} connections per process ({providers} here):"
            " streams past it wait for one (see 'upstream peak') and fail when none is free in"
            f" {POOL_S:g} s ({POOL_S + CONNECT_S:g} s with SLUICE_UPSTREAM_CLIENT=aiohttp)"
        )
    return notes


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.live_streams_bench")
    parser.add_argument("--streams", default="250,500,1000,2000", help="the N to run, comma-separated")
    parser.add_argument("--duration", type=float, default=60, help="seconds new streams start for, per run")
    parser.add_argument("--ramp", type=float, default=5, help="seconds over which the N connections open")
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=50)
    parser.add_argument("--replicas", type=parse_replicas, default={}, help="Sluice's, e.g. provider=2,ingress=2")
    parser.add_argument("--direct-only", action="store_true", help="the tools alone: no Sluice")
    parser.add_argument("--cc", default=shutil.which("cc") or "/usr/bin/gcc")
    parser.add_argument("--out", default="loadtest/results/live_streams.json")
    args = parser.parse_args()
    args.streams = [int(n) for n in args.streams.split(",") if n.strip()]
    tools = build(args.cc)
    nofile = raise_nofile(max(args.streams))
    notes = [] if args.direct_only else check_limits(args.streams, args.replicas)
    for note in notes:
        print(f"note: {note}")
    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "duration_s": args.duration,
        "ramp_s": args.ramp,
        "chunks": args.chunks,
        "interval_ms": args.interval_ms,
        "replicas": args.replicas,
        "nofile": nofile,
        "notes": notes,
    }
    root = Path(tempfile.mkdtemp(prefix="sluice-live-bench-"))
    try:
        with upstream(tools["upstream"], args.chunks, args.interval_ms) as up:
            results["runs"] = sweep(tools, args, up, root / "sluice")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    write_results(results, args.out, summary(results))
    return 0


def summary(results: dict) -> str:
    lines = ["", f"{results['chunks']} chunks {results['interval_ms']:g} ms apart per stream, {results['cpus']} CPUs"]
    lines.append(
        f"  {'N':>5}  {'direct p50/p99/max ms':>22}  {'added p50/p99/max ms':>22}  {'KB/stream':>9}"
        f"  {'CPU µs/chunk':>12}  {'short':>5}  {'errors':>6}  {'upstream peak':>13}"
    )
    for run in results["runs"]:
        d = run["direct"]["delay_us"]
        direct = f"{d['p50'] / 1000:.2f}/{d['p99'] / 1000:.2f}/{d['max'] / 1000:.1f}"
        s = run.get("sluice")
        if s is None:
            u = run["direct"]
            per = u["tools_cpu_us_per_chunk"]
            lines.append(f"  {run['n']:>5}  {direct:>22}  (direct only: CPU µs per chunk client {per['client']},"
                         f" upstream {per['upstream']}; short {u['short_streams']}, errors {u['errors']})")  # fmt: skip
            continue
        a = run["added_delay_ms"]
        cpu = sum(s["cpu_us_per_chunk"].values())
        kb = run["kb_per_open_stream"]
        lines.append(
            f"  {run['n']:>5}  {direct:>22}  {a['p50']:+.2f}/{a['p99']:+.2f}/{a['max']:+.1f}".ljust(55)
            + f"  {kb if kb is not None else '?':>9}  {cpu:>12.0f}  {s['short_streams']:>5}  {s['errors']:>6}"
            f"  {s['upstream']['peak']:>13}"
        )
    for run in results["runs"]:
        if "sluice" in run:
            per = "  ".join(f"{k}={v:.0f}" for k, v in run["sluice"]["cpu_us_per_chunk"].items())
            lines.append(f"  CPU µs per chunk at n={run['n']}: {per}")
            kb = run.get("kb_per_open_stream_by_process", {})
            lines.append(f"  KB per open stream at n={run['n']}: " + "  ".join(f"{k}={v:.0f}" for k, v in kb.items()))
            # From the request to its first content event (the upstream sends it one interval in): a stream
            # that waited for a connection to the upstream shows here, not in the delay per chunk.
            fd, fs = run["direct"]["first_chunk_us"], run["sluice"]["first_chunk_us"]
            lines.append(
                f"  first chunk at n={run['n']}: direct p50 {fd['p50'] / 1000:.1f} p99 {fd['p99'] / 1000:.1f} ms,"
                f" through Sluice p50 {fs['p50'] / 1000:.1f} p99 {fs['p99'] / 1000:.1f} max {fs['max'] / 1000:.1f} ms"
            )
    lines.append("  target (1,000 streams): added p99 per chunk <= 20 ms, <= 150 KB per open stream")
    lines.extend(f"  note: {note}" for note in results["notes"])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
