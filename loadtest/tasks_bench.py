"""`make bench-tasks`: issue 28's numbers, in one run on this machine.

Sluice runs as `sluice up` runs it (every process the supervisor starts,
events into the embedded ClickHouse, the bundled mock upstream as the
provider of every model), with the demo config's image, audio, moderation
and rerank models and a chat model for the batches, and a key with limits
and a budget as `make bench` has.

1. Each new endpoint (``tasks_bench_endpoints``): images generations
   (``b64_json`` and ``url``), an edit of a 64x64 PNG, a transcription and
   a translation of a ~100 KB WAV, speech of a 200-character input (time to
   its first byte and to its last), a moderation, rerank in Cohere's /v2 and
   Jina's /v1 shapes over 20 documents: ``--requests`` one after another on
   one kept-alive connection through the gateway, and the same number sent
   straight to the mock (the deployment's URL; the body the gateway's
   provider sent the mock for the same request, read back from the mock),
   after a warm-up each. p50/p99, the added p50 (gateway minus direct), CPU
   µs per request by process, where the time goes inside the gateway (its
   requests rows, ``breakdown``). The mock adds no latency (its default;
   no directive in any request). Every answer is checked (status 200, the
   endpoint's shape, the image a PNG, the transcript the WAV's own text,
   the audio the mock's bytes) and counted when wrong.
2. A batch of ``--lines`` chat lines through the Files and Batch APIs
   (openai SDK): from ``batches.create`` to ``completed`` (polled every
   0.2 s), lines/s; the lines' own span from their rows (named query
   ``batches``: first line in to last line out); ``request_counts``, the
   output file (every ``custom_id`` once, each 200), the mock's count of
   calls and the rows checked. Once with ``[mock:latency_ms=0]`` in every
   line, once with ``[mock:latency_ms=100]``: there lines/s is bounded by
   the tenant's batch concurrency (``batches_per_tenant``) / 0.1 s, and the
   concurrency the run reached is at least lines/s x 0.1 s (Little's law,
   over the lines' own span: a line takes 0.1 s and a little more).
3. The memory ceiling during a 1 GB upload is not measured here: it is
   ``tests/integration/test_files_large.py``'s (``pytest -s`` prints it).

Why not wrk, as the other benches: half of these bodies are multipart
uploads, speech needs the time to its first byte, and every answer is
checked. httpx (async, keep-alive, one connection) costs the client the
same on both sides, so the added p50 is the gateway's.

    python -m loadtest.tasks_bench [--requests 300] [--lines 10000] [--out loadtest/results/tasks_bench.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai

from loadtest.bench import BUDGET, LIMITS, breakdown, cpu_seconds, write_results
from loadtest.nginx_bench import pct
from loadtest.tasks_bench_endpoints import Answer, Endpoint, ReplyError, endpoints
from schemas.control import ApiKey
from services.cli.layout import Layout
from services.cli.named_query import query
from services.cli.nats_server import free_port
from services.cli.supervisor import Supervisor
from services.config import GatewaySettings

KEY = "sk-bench-tasks-0123456789"
TENANT = "bench"
CHAT_MODEL = "bench-chat"
CHAT = "/v1/chat/completions"
WARMUP = 10
SLOW_LINE_MS = 100
POLL_S = 0.2
NATIVE_MODEL = "bench-native"
# How often the gateway polls a native batch here (30 s by default), and how
# long the mock's batch takes to end (its default).
NATIVE_POLL_S = 0.5
MOCK_BATCH_MS = 300

# The demo config's task models (services/cli/demo.toml), a chat model for the batches' lines.
CONFIG = """
[gateway]
request_timeout_s = 60
stream_idle_timeout_s = 60
{gateway}

[[tenants]]
id = "bench"
limits = {{ rpm = 1000000000, tpm = 1000000000000, max_parallel = 100000 }}
budget = {{ usd = "1000000.00", period = "monthly" }}

[[models]]
name = "bench-chat"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "gpt-4o-mini"
api_key_env = ""

# The same model, its batches run as one OpenAI batch (the mock's Batch API).
[[models]]
name = "bench-native"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "gpt-4o-mini"
api_key_env = ""
native_batch = true

[[models]]
name = "demo-image"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "gpt-image-1"
api_key_env = ""

[[models]]
name = "demo-transcribe"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "whisper-1"
api_key_env = ""

[[models]]
name = "demo-speech"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "tts-1"
api_key_env = ""

[[models]]
name = "demo-moderation"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "omni-moderation-latest"
api_key_env = ""

[[models]]
name = "demo-rerank"
provider = "cohere"
base_url = "http://127.0.0.1:{mock}"
upstream_model = "rerank-v3.5"
api_key_env = ""

[[models]]
name = "demo-rerank-jina"
provider = "openai_compatible"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "jina-reranker-v2-base-multilingual"
api_key_env = ""
"""


@contextmanager
def gateway(root: Path, batch_concurrency: int) -> Iterator[tuple[Layout, Supervisor]]:
    """Sluice with its mock upstream on free loopback ports, the bench's key; stopped on the way out."""
    mock = free_port()
    setting = f"batches_per_tenant = {batch_concurrency}\nnative_batch_poll_s = {NATIVE_POLL_S}"
    (root / "sluice.toml").write_text(CONFIG.format(mock=mock, gateway=setting))
    layout = Layout(
        home=root, config=root / "sluice.toml", nats_port=free_port(), http_port=free_port(), mock_port=mock
    )
    sup = Supervisor(layout, extra_keys={KEY: ApiKey(id="bench", tenant_id=TENANT, limits=LIMITS, budget=BUDGET)})
    print(f"starting Sluice in {root} ...", flush=True)
    sup.start()
    try:
        yield layout, sup
    finally:
        sup.stop()


# --- 1. each endpoint, through the gateway and direct -----------------------------------------------------------


async def send(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
) -> tuple[Answer, float, float]:
    """One request; its answer, ms to the answer's first byte and to its last."""
    started = time.perf_counter()
    first = 0.0
    parts = []
    async with client.stream("POST", url, content=body, headers=headers) as resp:
        async for part in resp.aiter_bytes():
            first = first or time.perf_counter()
            parts.append(part)
    ended = time.perf_counter()
    first = first or ended
    return Answer(resp.status_code, resp.headers, b"".join(parts)), (first - started) * 1e3, (ended - started) * 1e3


async def timed(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], ep: Endpoint, via_gateway: bool, n: int
) -> dict[str, Any]:
    """``n`` requests one after another, each answer checked after its time is taken."""
    firsts, lasts, wrong = [], [], 0
    error = ""
    for _ in range(n):
        answer, first_ms, last_ms = await send(client, url, body, headers)
        firsts.append(first_ms)
        lasts.append(last_ms)
        try:
            ep.check(answer, via_gateway)
        except ReplyError as exc:
            wrong += 1
            error = error or str(exc)
    out = {"requests": n, "wrong": wrong, **{f"{k}_ms": v for k, v in pct(lasts).items()}}
    if ep.streamed:
        out |= {f"first_byte_{k}_ms": v for k, v in pct(firsts).items()}
    return out | ({"first_error": error} if error else {})


async def upstream_copy(client: httpx.AsyncClient, mock: str) -> tuple[bytes, str]:
    """The body the mock received last, and its content type: what the gateway sent the deployment."""
    body = (await client.get(f"{mock}/mock/last-request")).content
    headers = (await client.get(f"{mock}/mock/last-headers")).json()
    return body, headers.get("content-type", "application/json")


async def prepared(client: httpx.AsyncClient, origin: str, mock: str, ep: Endpoint) -> tuple[bytes, str]:
    """One request each way, checked (a refusal would make fast, meaningless
    numbers); the direct body, read back from the mock between the two."""
    auth = {"authorization": f"Bearer {KEY}", "content-type": ep.content_type}
    answer, _, _ = await send(client, origin + ep.path, ep.body, auth)
    try:
        ep.check(answer, True)
        direct_body, direct_type = await upstream_copy(client, mock)
        if ep.name == "images url":  # the gateway serves the image it made
            served = await client.get(json.loads(answer.body)["data"][0]["url"])
            if served.status_code != 200 or served.headers.get("content-type") != "image/png":
                raise ReplyError(f"the image's URL answered {served.status_code} {served.headers}")
        answer, _, _ = await send(client, mock + ep.upstream, direct_body, {"content-type": direct_type})
        ep.check(answer, False)
    except ReplyError as exc:
        raise RuntimeError(f"{ep.name}: {exc}") from exc
    return direct_body, direct_type


async def measure_endpoints(layout: Layout, sup: Supervisor, n: int) -> dict[str, Any]:
    origin = f"http://127.0.0.1:{layout.http_port}"
    mock = f"http://127.0.0.1:{layout.mock_port}"
    pids = sup.pids()
    watched = {"direct": {"mock-upstream": pids["mock-upstream"]}, "sluice": pids}
    admin = str(sup.creds_path("admin"))
    out: dict[str, Any] = {}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for ep in endpoints():
            direct_body, direct_type = await prepared(client, origin, mock, ep)
            runs = {
                "direct": (mock + ep.upstream, direct_body, {"content-type": direct_type}),
                "sluice": (
                    origin + ep.path,
                    ep.body,
                    {"authorization": f"Bearer {KEY}", "content-type": ep.content_type},
                ),
            }
            result: dict[str, Any] = {"bytes_sent": {"sluice": len(ep.body), "direct": len(direct_body)}, **ep.extra}
            for target, (url, body, headers) in runs.items():
                via_gateway = target == "sluice"
                await timed(client, url, body, headers, ep, via_gateway, min(WARMUP, n))
                before = {name: cpu_seconds(pid) for name, pid in watched[target].items()}
                since = time.time_ns()
                r = await timed(client, url, body, headers, ep, via_gateway, n)
                until = time.time_ns()
                r["cpu_us_per_request"] = {
                    name: round((cpu_seconds(pid) - before[name]) / n * 1e6, 1) for name, pid in watched[target].items()
                }
                if via_gateway:
                    r["breakdown_ms"] = await asyncio.to_thread(breakdown, layout.nats_url, since, until, admin)
                result[target] = r
            result |= added(result["sluice"], result["direct"])
            out[ep.name] = result
            print("  " + endpoint_line(ep.name, result), flush=True)
    return out


def added(sluice: dict[str, Any], direct: dict[str, Any]) -> dict[str, float]:
    """What the gateway adds at the median: to the last byte, and to the first where it was timed."""
    out = {"added_p50_ms": round(sluice["p50_ms"] - direct["p50_ms"], 3)}
    if "first_byte_p50_ms" in sluice:
        out["added_first_byte_p50_ms"] = round(sluice["first_byte_p50_ms"] - direct["first_byte_p50_ms"], 3)
    return out


def endpoint_line(name: str, r: dict[str, Any]) -> str:
    d, s = r["direct"], r["sluice"]
    line = (
        f"{name:30} {d['p50_ms']:>8.2f} / {d['p99_ms']:<8.2f} {s['p50_ms']:>8.2f} / {s['p99_ms']:<8.2f} "
        f"{r['added_p50_ms']:>+9.2f}  {d['wrong'] + s['wrong']}"
    )
    if "added_first_byte_p50_ms" in r:
        line += (
            f"\n{'  first byte':30} {d['first_byte_p50_ms']:>8.2f} / {d['first_byte_p99_ms']:<8.2f} "
            f"{s['first_byte_p50_ms']:>8.2f} / {s['first_byte_p99_ms']:<8.2f} {r['added_first_byte_p50_ms']:>+9.2f}"
        )
    return line


# --- 2. batches through the Files and Batch APIs ----------------------------------------------------------------


def batch_input(run: str, lines: int, latency_ms: int, model: str = CHAT_MODEL) -> bytes:
    """JSONL of ``lines`` chat lines, each prompt its own (the mock counts a body seen twice)."""
    out = bytearray()
    for i in range(lines):
        text = f"Batch {run}, line {i}: say something short. [mock:latency_ms={latency_ms}]"
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
        out += json.dumps({"custom_id": f"{run}-{i}", "method": "POST", "url": CHAT, "body": body}).encode() + b"\n"
    return bytes(out)


def batch_problems(run: str, lines: int, batch: Any, output: list[dict], errors: list[dict]) -> list[str]:
    """What is wrong with a batch that should have run every line once, successfully."""
    problems = []
    if batch.status != "completed":
        problems.append(f"status {batch.status}")
    counts = batch.request_counts
    got = (counts.total, counts.completed, counts.failed) if counts is not None else None
    if got != (lines, lines, 0):
        problems.append(f"request_counts (total, completed, failed) {got}, not {(lines, lines, 0)}")
    ids = sorted(o.get("custom_id", "") for o in output)
    if ids != sorted(f"{run}-{i}" for i in range(lines)):
        problems.append(f"the output file has {len(output)} lines, {len(set(ids))} custom_ids, not each line once")
    not_ok = sum(1 for o in output if (o.get("response") or {}).get("status_code") != 200)
    if not_ok:
        problems.append(f"{not_ok} output lines not answered 200")
    if errors:
        problems.append(f"{len(errors)} lines in the error file, the first: {json.dumps(errors[0])[:300]}")
    return problems


def mock_stats(layout: Layout) -> dict[str, Any]:
    return httpx.get(f"http://127.0.0.1:{layout.mock_port}/mock/stats", timeout=10).json()


def batch_rows(layout: Layout, admin: str, batch_id: str, lines: int, timeout: float = 60) -> dict[str, Any]:
    """The batch's row of the named query ``batches`` once it counts every line (or the wait ran out)."""
    deadline = time.monotonic() + timeout
    while True:
        found = asyncio.run(query("batches", {"hours": 1, "batch_id": batch_id}, layout.nats_url, creds=admin))
        if found.get("error"):
            return {"error": found["error"]}
        row = dict(zip(found["columns"], found["rows"][0], strict=True)) if found["rows"] else {}
        if row.get("lines", 0) >= lines or time.monotonic() > deadline:
            return row
        time.sleep(1)


def run_batch(
    layout: Layout, sup: Supervisor, run: str, lines: int, latency_ms: int, timeout: float, model: str = CHAT_MODEL
) -> dict[str, Any]:
    """One batch from create to its end: with ``model`` NATIVE_MODEL, one
    batch of the mock's Batch API (the mock's calls are then its batch calls)."""
    pids = sup.pids()
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{layout.http_port}/v1", api_key=KEY, max_retries=0, timeout=120)
    native = model == NATIVE_MODEL
    with client:
        data = batch_input(run, lines, latency_ms, model)
        file_id = client.files.create(file=(f"{run}.jsonl", data), purpose="batch").id
        calls_before = mock_stats(layout)
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        batch = client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
        deadline = started + timeout
        while batch.status not in ("completed", "failed", "expired", "cancelled") and time.monotonic() < deadline:
            time.sleep(POLL_S)
            batch = client.batches.retrieve(batch.id)
        took = time.monotonic() - started
        cpu = {name: round((cpu_seconds(pid) - cpu_before[name]) / lines * 1e6, 1) for name, pid in pids.items()}
        calls_after = mock_stats(layout)

        def lines_of(file_id: str | None) -> list[dict]:
            return [json.loads(x) for x in client.files.content(file_id).text.splitlines()] if file_id else []

        output, errors = lines_of(batch.output_file_id), lines_of(batch.error_file_id)
    rows = batch_rows(layout, str(sup.creds_path("admin")), batch.id, lines)
    problems = batch_problems(run, lines, batch, output, errors)
    calls = calls_after["requests"] - calls_before["requests"]
    repeated = calls_after["repeated"] - calls_before["repeated"]
    if native:
        upstream = native_batches(layout)
        made = [b for b in upstream["batches"].values() if f"{run}-0" in b["custom_ids"]]
        if calls or len(made) != 1 or made[0]["answered"] != lines:
            problems.append(f"{calls} calls of their own and {len(made)} upstream batches, not 0 and one of {lines}")
    elif calls != lines or repeated:
        problems.append(f"the mock saw {calls} calls ({repeated} repeated), not {lines}")
    if rows.get("lines") != lines or rows.get("succeeded") != lines:
        problems.append(f"the batch's rows: {rows}")
    span_s = (rows["last_ms"] - rows["first_ms"]) / 1000 if "last_ms" in rows else None
    counts = batch.request_counts
    return {
        "lines": lines,
        "upstream_latency_ms": latency_ms,
        "status": batch.status,
        "create_to_completed_s": round(took, 2),
        "lines_per_s": round(lines / took, 1),
        "lines_span_s": round(span_s, 2) if span_s else None,
        "lines_per_s_in_span": round(lines / span_s, 1) if span_s else None,
        "request_counts": counts.model_dump() if counts is not None else None,
        "batch_times": {
            k: getattr(batch, k) for k in ("created_at", "in_progress_at", "finalizing_at", "completed_at")
        },
        "mock_calls": calls,
        "rows": rows,
        "cpu_us_per_line": cpu,
        "problems": problems,
    }


def native_batches(layout: Layout) -> dict[str, Any]:
    response = httpx.get(f"http://127.0.0.1:{layout.mock_port}/mock/batches", timeout=60)
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def concurrency_reached(r: dict[str, Any], per_line_s: float) -> float:
    """Lines in flight on average while the lines ran (at least: each took
    ``per_line_s`` and a little more); from create to completed when the rows had no span."""
    return round((r["lines_per_s_in_span"] or r["lines_per_s"]) * per_line_s, 1)


def batch_line(name: str, r: dict[str, Any]) -> str:
    span = f"; lines' own span {r['lines_span_s']} s, {r['lines_per_s_in_span']}/s" if r["lines_span_s"] else ""
    return (
        f"{name}: {r['lines']} lines, created to {r['status']} in {r['create_to_completed_s']} s, "
        f"{r['lines_per_s']} lines/s{span}; request_counts {r['request_counts']}"
    )


# --- the run ----------------------------------------------------------------------------------------------------


def measure(root: Path, args: argparse.Namespace, batch_concurrency: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with gateway(root, batch_concurrency) as (layout, sup):
        print(f"{'endpoint':30} {'direct p50 / p99 ms':>19} {'sluice p50 / p99 ms':>19} {'added p50':>9}  wrong")
        result["endpoints"] = asyncio.run(measure_endpoints(layout, sup, args.requests))
        result["batches"] = {}
        for name, latency in (("latency 0", 0), (f"latency {SLOW_LINE_MS} ms", SLOW_LINE_MS)):
            run = f"b{latency}"
            r = run_batch(layout, sup, run, args.lines, latency, args.batch_timeout)
            if latency:
                per_line_s = latency / 1000
                r["concurrency_reached"] = concurrency_reached(r, per_line_s)
                r["lines_per_s_ceiling"] = round(batch_concurrency / per_line_s, 1)
            result["batches"][name] = r
            print("  " + batch_line(name, r), flush=True)
        name = f"native (one OpenAI batch; polled every {NATIVE_POLL_S} s, the mock's batch takes {MOCK_BATCH_MS} ms)"
        r = run_batch(layout, sup, "native", args.lines, 0, args.batch_timeout, NATIVE_MODEL)
        result["batches"][name] = r
        print("  " + batch_line(name, r), flush=True)
    return result


def figures(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's numbers, from the runs."""
    eps = results["endpoints"]
    out: dict[str, Any] = {"added_p50_ms": {name: r["added_p50_ms"] for name, r in eps.items()}}
    out["speech_added_first_byte_p50_ms"] = next(
        (r["added_first_byte_p50_ms"] for r in eps.values() if "added_first_byte_p50_ms" in r), None
    )
    out["batch_lines_per_s"] = {name: r["lines_per_s"] for name, r in results["batches"].items()}
    out["file_upload_1gb_memory"] = results["file_upload_1gb_memory"]
    return out


def summary(results: dict[str, Any]) -> str:
    lines = ["", f"{'endpoint':30} {'direct p50 / p99 ms':>19} {'sluice p50 / p99 ms':>19} {'added p50':>9}  wrong"]
    lines += [endpoint_line(name, r) for name, r in results["endpoints"].items()]
    lines.append(f"\nbatches (tenant batch concurrency {results['batch_concurrency']}):")
    for name, r in results["batches"].items():
        lines.append("  " + batch_line(name, r))
        if "concurrency_reached" in r:
            lines.append(
                f"    at {r['upstream_latency_ms']} ms a line: at most {r['lines_per_s_ceiling']} lines/s; "
                f"concurrency reached {r['concurrency_reached']} of {results['batch_concurrency']}"
            )
        lines.append("    CPU µs per line: " + "  ".join(f"{k}={v:.0f}" for k, v in r["cpu_us_per_line"].items()))
    lines.append(f"\n1 GB upload, memory: {results['file_upload_1gb_memory']}")
    lines += warnings(results)
    return "\n".join(lines)


def warnings(results: dict[str, Any]) -> list[str]:
    out = []
    for name, r in results["endpoints"].items():
        for target in ("direct", "sluice"):
            if r[target]["wrong"]:
                out.append(f"WARNING {name} {target}: {r[target]['wrong']} wrong answers: {r[target]['first_error']}")
    for name, r in results["batches"].items():
        out += [f"WARNING batch {name}: {p}" for p in r["problems"]]
    return out or ["every answer checked: all 200 and of their endpoint's shape; every batch line ran once, answered"]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.tasks_bench")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per endpoint, each way (>= 2)")
    parser.add_argument("--lines", type=int, default=10_000, help="lines of each batch")
    parser.add_argument(
        "--batch-concurrency", type=int, default=None, help="the tenant's batch lines at once (default: the gateway's)"
    )
    parser.add_argument("--batch-timeout", type=float, default=900, help="seconds a batch may take")
    parser.add_argument("--out", default="loadtest/results/tasks_bench.json")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (logs, config) to look into")
    args = parser.parse_args()
    if args.requests < 2 or args.lines < 1:
        parser.error("--requests must be at least 2 (a p99 needs two), --lines at least 1")
    root = Path(tempfile.mkdtemp(prefix="sluice-tasks-bench-"))
    concurrency = args.batch_concurrency or GatewaySettings().batches_per_tenant
    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "requests": args.requests,
        "batch_concurrency": concurrency,
        "file_upload_1gb_memory": "not measured here: tests/integration/test_files_large.py (pytest -s prints "
        "each process's RSS at rest and its growth at peak)",
    }
    try:
        results |= measure(root, args, concurrency)
    finally:
        if args.keep:
            print(f"kept {root} (Sluice's logs in logs/)")
        else:
            shutil.rmtree(root, ignore_errors=True)
    results["summary"] = figures(results)
    write_results(results, args.out, summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
