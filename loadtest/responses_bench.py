"""`make bench-responses`: what OpenAI's Responses API (``POST /v1/responses``)
costs in Sluice next to ``/v1/chat/completions``, in one run on this machine.

The setup is nginx_bench's: Debian's nginx as a fixed-answer upstream (here
also with a fixed, non-streamed Responses answer with usage, as OpenAI's
``/v1/responses`` gives), Sluice as `sluice up` runs it (its ``bench-model``
group of two OpenAI deployments behind that nginx, so a Responses request
goes up natively, as the client wrote it), wrk with a Lua body. Every
request is non-streamed and carries the same ~1 KB prompt.

Measured, each also against nginx called directly with the same body:

1. the p50 that Sluice adds (Sluice minus direct) at one connection,
   responses against chat completions (``store: false``);
2. requests/s at 64 connections, both (``store: false``), and responses
   once more with ``store: true``, which writes every answer to the
   ``sluice_responses`` KV bucket;
3. a 20-turn conversation, built once (each turn continues the last by
   ``previous_response_id``, each turn's input ~1 KB of varied words):
   the p50 at one connection of a request continuing it, against the same
   request without ``previous_response_id`` (both ``store: false``), and
   the size of its stored entry as the KV bucket holds it.

    python -m loadtest.responses_bench [--duration 10] [--out loadtest/results/responses_bench.json]

Needs nginx and wrk (`make bench-tools` installs them with apt-get when missing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec

from loadtest.bench import LUA, run_wrk, write_results
from loadtest.nginx_bench import KEY, NGINX, PROMPT, chat_body, nginx, sluice
from schemas import subjects
from services.bus import process
from services.bus.stored_responses import unpack

MODEL = "bench-model"  # nginx_bench's group of two OpenAI deployments at /complete/v1
TENANT = "bench"  # KEY's tenant
TURNS = 20

# OpenAI's non-streamed answer to POST /v1/responses (as in tests/fixtures/openai/responses_text.json).
RESPONSE = {
    "id": "resp_nginx",
    "object": "response",
    "created_at": 1700000000,
    "status": "completed",
    "completed_at": 1700000001,
    "background": False,
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "model": "gpt-4o-mini-2024-07-18",
    "output": [
        {
            "type": "message",
            "id": "msg_nginx",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "A fixed answer.", "annotations": [], "logprobs": []}],
        }
    ],
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "service_tier": "default",
    "store": False,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "usage": {
        "input_tokens": 250,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 21,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 271,
    },
    "user": None,
    "metadata": {},
}
_answer = json.dumps(RESPONSE)
assert "'" not in _answer and "$" not in _answer  # it sits in a quoted nginx string
# Where Sluice's deployments (base_url .../complete/v1) send a Responses request, and where "direct" asks.
LOCATIONS = f"""
        location = /complete/v1/responses {{
            default_type application/json;
            return 200 '{_answer}';
        }}
"""

VOCABULARY = (
    "river stone window garden market signal paper engine silver harbor quiet orange letter number system "
    "travel winter summer morning evening planet circle bridge forest animal mountain village kitchen "
    "doctor teacher camera music yellow purple simple careful honest gentle rapid distant ancient modern"
)


def responses_body(text: str = PROMPT, store: bool = False, previous: str = "") -> str:
    doc: dict = {"model": MODEL, "input": text, "store": store}
    if previous:
        doc["previous_response_id"] = previous
    return json.dumps(doc)


def turn_text(turn: int) -> str:
    """~1 KB of words, different every turn (so the stored entry does not compress to nothing)."""
    rng, words = random.Random(turn), VOCABULARY.split()
    text = f"Turn {turn}: "
    while len(text) < 1000:
        text += rng.choice(words) + " "
    return text


def build_chain(url: str, turns: int) -> str:
    """A conversation of ``turns`` requests, each continuing the last; the last response's id."""
    previous = ""
    with httpx.Client(headers={"authorization": f"Bearer {KEY}"}, timeout=30) as client:
        for turn in range(turns):
            resp = client.post(url, content=responses_body(turn_text(turn), store=True, previous=previous))
            resp.raise_for_status()
            previous = resp.json()["id"]
    return previous


def check(url: str, body: str, headers: dict[str, str]) -> None:
    """One request before wrk repeats it: a 4xx would make fast, meaningless numbers."""
    resp = httpx.post(url, content=body, headers=headers | {"content-type": "application/json"}, timeout=30)
    if resp.status_code != 200:
        raise RuntimeError(f"{url} answered {resp.status_code}: {resp.text[:500]}")


async def stored_entry(nats_url: str, creds: str | None, response_id: str) -> dict:
    """The response's entry in the KV bucket, as stored (key ``<tenant>.<response id>``)."""
    nc = await process.connect_tool(nats_url, creds)
    try:
        kv = await nc.jetstream().key_value(subjects.KV_RESPONSES)
        value = (await kv.get(f"{TENANT}.{response_id}")).value or b""
    finally:
        await nc.close()
    record = unpack(value)
    return {
        "stored_bytes": len(value),
        "compressed": value[:1] == b"\x01",
        "msgpack_bytes": len(msgspec.msgpack.encode(record)),
        "input_items": len(record.input),
    }


def measure(ngx: int, home: Path, duration: int) -> dict:
    result: dict = {"runs": {}}
    runs = result["runs"]
    auth = {"authorization": f"Bearer {KEY}"}

    def wrk(name: str, url: str, body: str, c: int, pids: dict[str, int]) -> dict:
        script = home / f"{name.replace(' ', '_').replace(':', '').replace('=', '')}.lua"
        script.write_text(LUA.format(body=json.dumps(body), key=KEY))
        run_wrk(url, script, c, 2, pids)  # warm-up
        r = runs[name] = run_wrk(url, script, c, duration, pids)
        print(
            f"  {name:34} {r['rps']:>8.0f}/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  errors {r['errors']}",
            flush=True,
        )
        return r

    direct = {
        "chat": f"http://127.0.0.1:{ngx}/complete/v1/chat/completions",
        "responses": f"http://127.0.0.1:{ngx}/complete/v1/responses",
    }
    bodies = {"chat": chat_body(MODEL, False), "responses": responses_body()}
    for api, url in direct.items():
        check(url, bodies[api], {})
    with sluice(home / "sluice", ngx) as (layout, sup):
        pids = sup.pids()
        gw = {
            "chat": f"http://127.0.0.1:{layout.http_port}/v1/chat/completions",
            "responses": f"http://127.0.0.1:{layout.http_port}/v1/responses",
        }
        for api, url in gw.items():
            check(url, bodies[api], auth)

        # 3's conversation first, so that the continuing run sits next to the same request without it.
        start = time.perf_counter()
        last = build_chain(gw["responses"], TURNS)
        result["chain"] = {"turns": TURNS, "last_id": last, "build_s": round(time.perf_counter() - start, 2)}
        try:
            result["chain"]["entry"] = asyncio.run(
                stored_entry(layout.nats_url, str(sup.creds_path("admin")) if layout.auth else None, last)
            )
        except Exception as exc:
            result["chain"]["entry"] = {"error": f"{type(exc).__name__}: {exc}"}
        continuing = responses_body(previous=last)
        check(gw["responses"], continuing, auth)

        for c in (1, 64):
            for api in ("chat", "responses"):
                wrk(f"direct {api} c={c}", direct[api], bodies[api], c, {})
                wrk(f"sluice {api} c={c}", gw[api], bodies[api], c, pids)
            if c == 1:
                wrk(f"sluice responses continuing {TURNS} c=1", gw["responses"], continuing, 1, pids)
        wrk("sluice responses store:true c=64", gw["responses"], responses_body(store=True), 64, pids)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.responses_bench")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (each after 2 s of warm-up)")
    parser.add_argument("--out", default="loadtest/results/responses_bench.json")
    args = parser.parse_args()
    for tool in (NGINX, "wrk"):
        if not shutil.which(tool):
            print(f"{tool} not found: `make bench-tools` installs it (apt-get install nginx wrk)", file=sys.stderr)
            return 2
    root = Path(tempfile.mkdtemp(prefix="sluice-responses-bench-"))
    results: dict = {"cpus": os.cpu_count(), "duration_s": args.duration}
    try:
        with nginx(root / "nginx", LOCATIONS) as ngx:
            results |= measure(ngx, root, args.duration)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results["summary"] = figures(results)
    write_results(results, args.out, summary(results))
    return 0


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def figures(results: dict) -> dict:
    """The issue's numbers, from the runs."""
    runs = results["runs"]

    def added(api: str) -> float:
        return round(runs[f"sluice {api} c=1"]["p50_ms"] - runs[f"direct {api} c=1"]["p50_ms"], 3)

    def cpu(name: str) -> float:
        return round(sum(runs[name]["cpu_us_per_request"].values()), 1)

    chat_rps, resp_rps = runs["sluice chat c=64"]["rps"], runs["sluice responses c=64"]["rps"]
    stored_rps = runs["sluice responses store:true c=64"]["rps"]
    fresh, cont = runs["sluice responses c=1"]["p50_ms"], runs[f"sluice responses continuing {TURNS} c=1"]["p50_ms"]
    return {
        "added_p50_ms": {"chat": added("chat"), "responses": added("responses")},
        "added_p50_ratio_responses_to_chat": _ratio(added("responses"), added("chat")),
        "rps_c64": {"chat": chat_rps, "responses": resp_rps, "responses_store_true": stored_rps},
        "rps_ratio_responses_to_chat": _ratio(resp_rps, chat_rps),
        "rps_ratio_store_true_to_false": _ratio(stored_rps, resp_rps),
        "cpu_us_per_request_c64": {
            "chat": cpu("sluice chat c=64"),
            "responses": cpu("sluice responses c=64"),
            "responses_store_true": cpu("sluice responses store:true c=64"),
        },
        "continue_20_turns": {
            "p50_ms_fresh": fresh,
            "p50_ms_continuing": cont,
            "added_ms": round(cont - fresh, 3),
            "ratio": _ratio(cont, fresh),
            "entry": results["chain"]["entry"],
        },
    }


def summary(results: dict) -> str:
    f, runs = results["summary"], results["runs"]
    lines = ["", f"{'':22} {'chat':>12} {'responses':>12} {'responses/chat':>15}"]

    def row(label: str, chat: float, resp: float, unit: str = "") -> None:
        ratio, digits = _ratio(resp, chat), 2 if unit else 0
        shown = "-" if ratio is None else ratio
        lines.append(f"{label:22} {chat:>10.{digits}f}{unit:2} {resp:>10.{digits}f}{unit:2} {shown:>15}")

    for target in ("direct", "sluice"):
        row(f"{target} p50 c=1", runs[f"{target} chat c=1"]["p50_ms"], runs[f"{target} responses c=1"]["p50_ms"], "ms")
    row("added p50 c=1", f["added_p50_ms"]["chat"], f["added_p50_ms"]["responses"], "ms")
    row("direct req/s c=64", runs["direct chat c=64"]["rps"], runs["direct responses c=64"]["rps"])
    row("sluice req/s c=64", f["rps_c64"]["chat"], f["rps_c64"]["responses"])
    row("sluice CPU µs/req c=64", f["cpu_us_per_request_c64"]["chat"], f["cpu_us_per_request_c64"]["responses"])
    stored = runs["sluice responses store:true c=64"]
    lines.append(
        f"\nstore: true, c=64: {stored['rps']:.0f} req/s ({f['rps_ratio_store_true_to_false']}x store: false), "
        f"p50 {stored['p50_ms']:.2f} ms, CPU {f['cpu_us_per_request_c64']['responses_store_true']:.0f} µs/req"
    )
    cont = f["continue_20_turns"]
    lines.append(
        f"continuing a {TURNS}-turn conversation, c=1: p50 {cont['p50_ms_continuing']:.2f} ms "
        f"vs {cont['p50_ms_fresh']:.2f} ms without previous_response_id: +{cont['added_ms']:.2f} ms ({cont['ratio']}x)"
    )
    entry = cont["entry"]
    if "error" in entry:
        lines.append(f"stored entry: not read ({entry['error']})")
    else:
        lines.append(
            f"stored entry: {entry['stored_bytes']} bytes in KV ({'zlib' if entry['compressed'] else 'plain'}; "
            f"{entry['msgpack_bytes']} bytes of msgpack), {entry['input_items']} input items"
        )
    errors = {name: r["errors"] for name, r in runs.items() if r["errors"]}
    lines.append(f"errors: {errors or 'none'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
