"""The privacy logic alone, in one process: how fast the detectors scan, and
what restoring costs per streamed chunk.

1. Detector throughput: a 4 KB prompt of ordinary prose, and the same size
   with PII in it (emails, phones, cards, IBANs, IPs, a key), through
   ``privacy.inspect`` with every built-in detector masking: MB/s.
2. Injection heuristics on the same prompts: MB/s.
3. Restoring a streamed answer: µs per chunk for ``AnswerRestorer.delta``
   on a 21-chunk answer holding placeholders, against passing it through.
4. With ``--gateway``: the embedded gateway, two tenants, one without rules
   and one masking every built-in detector, the same 4 KB prompt with PII,
   alternating, at concurrency 1 and 64: what the redaction stage (and the
   restore) adds at p50/p99, and requests/s.

    python -m loadtest.privacy_bench [--seconds 3] [--gateway --requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from statistics import quantiles

import aiohttp

from loadtest.bench import embedded_gateway, write_results
from schemas.chat import ChatBody, Delta, Message
from schemas.control import PrivacyRules
from services import injection, privacy
from services.masking import AnswerRestorer

PROSE = (
    "The quarterly report shows revenue growth of twelve percent, driven by the new subscription tiers and "
    "lower churn in the enterprise segment. Please summarise the main risks and the outlook for next year. "
)
PII = (
    "Customer jane.doe@example.com (phone +44 20 7946 0958) paid with 4111 1111 1111 1111 from IBAN "
    "DE89 3704 0044 0532 0130 00; login from 192.168.1.10, key sk-proj-abcdefghijklmnopqrstuvwxyz0123456789. "
)
RULES = PrivacyRules(
    detectors=dict.fromkeys(("email", "phone", "card", "iban", "ssn", "ipv4", "ipv6", "secret"), "mask")
)


def prompt(with_pii: bool, size: int = 4096) -> str:
    unit = PROSE + (PII if with_pii else PROSE)
    return (unit * (size // len(unit) + 1))[:size]


def rate(fn, seconds: float) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n, time.perf_counter() - start


def detectors_mb_s(text: str, seconds: float) -> float:
    def once() -> None:
        privacy.inspect(ChatBody(model="m", messages=[Message(role="user", content=text)]), None, RULES)

    n, took = rate(once, seconds)
    return round(n * len(text.encode()) / took / 1e6, 2)


def injection_mb_s(text: str, seconds: float) -> float:
    n, took = rate(lambda: injection.score(text), seconds)
    return round(n * len(text.encode()) / took / 1e6, 2)


def restore_us_per_chunk(seconds: float) -> dict:
    vault = {"[EMAIL_1]": "jane.doe@example.com", "[PHONE_1]": "+44 20 7946 0958"}
    words = ("Write to [EMAIL_1] or call [PHONE_1] today, " * 4).split(" ")
    chunks = [Delta(content=" ".join(words[i : i + 2]) + " ") for i in range(0, 42, 2)]  # 21 chunks

    def restored() -> None:
        r = AnswerRestorer(vault)
        for d in chunks:
            r.delta(d)
        r.rest()

    def passed() -> None:
        for d in chunks:
            _ = d.content

    n1, t1 = rate(restored, seconds)
    n0, t0 = rate(passed, seconds)
    per_chunk = (t1 / n1 - t0 / n0) / len(chunks) * 1e6
    return {"chunks": len(chunks), "added_us_per_chunk": round(per_chunk, 2)}


PLAIN_KEY, MASKING_KEY = "sk-bench-plain-0123456789", "sk-bench-masking-0123456789"
# A tenant masking every built-in detector (the config's own words, shared with make bench).
MASKING_TENANT = '[[tenants]]\nid = "masking"\n[tenants.privacy.detectors]\n' + "".join(
    f'{name} = "mask"\n' for name in RULES.detectors
)
GATEWAY_CONFIG = (
    """
[gateway]
request_timeout_s = 30
[[tenants]]
id = "bench"
"""
    + MASKING_TENANT
    + """[[keys]]
id = "masking"
tenant = "masking"
key_env = "SLUICE_BENCH_MASKING_KEY"
[[models]]
name = "bench-model"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "gpt-4o-mini"
"""
)


def _pct(values: list[float]) -> dict[str, float]:
    cuts = quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 3), "p99": round(cuts[98], 3)}


async def _drive(url: str, n: int, concurrency: int) -> dict:
    """``n`` requests per key, the two keys alternating, ``concurrency`` at once."""
    text = prompt(True) + " [mock:chunks=21]"
    body = json.dumps({"model": "bench-model", "messages": [{"role": "user", "content": text}]})
    times: dict[str, list[float]] = {PLAIN_KEY: [], MASKING_KEY: []}
    gate = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession, key: str) -> None:
        async with gate:
            start = time.perf_counter()
            async with session.post(url, data=body, headers={"authorization": f"Bearer {key}"}) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            times[key].append((time.perf_counter() - start) * 1000)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers={"content-type": "application/json"}) as s:
        start = time.perf_counter()
        await asyncio.gather(*(one(s, key) for _ in range(n) for key in (PLAIN_KEY, MASKING_KEY)))
        took = time.perf_counter() - start
    plain, masking = _pct(times[PLAIN_KEY]), _pct(times[MASKING_KEY])
    return {
        "concurrency": concurrency,
        "no_rules_ms": plain,
        "masking_ms": masking,
        "added_p50_ms": round(masking["p50"] - plain["p50"], 3),
        "added_p99_ms": round(masking["p99"] - plain["p99"], 3),
        "requests_per_s": round(2 * n / took),
    }


def gateway_added(requests: int) -> list[dict]:
    import os

    os.environ["SLUICE_BENCH_MASKING_KEY"] = MASKING_KEY
    with embedded_gateway(GATEWAY_CONFIG, PLAIN_KEY, "sluice-privacy-") as (layout, _):
        url = f"http://127.0.0.1:{layout.http_port}/v1/chat/completions"
        asyncio.run(_drive(url, 50, 4))  # warm up
        return [asyncio.run(_drive(url, requests, c)) for c in (1, 64)]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.privacy_bench")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--gateway", action="store_true", help="also measure the stage through the whole gateway")
    parser.add_argument("--requests", type=int, default=1000, help="with --gateway: per key and concurrency")
    parser.add_argument("--out", default="loadtest/results/privacy.json")
    args = parser.parse_args()
    clean, dirty = prompt(False), prompt(True)
    found = privacy.inspect(ChatBody(model="m", messages=[Message(role="user", content=dirty)]), None, RULES)
    results = {
        "prompt_bytes": len(clean.encode()),
        "values_in_pii_prompt": len(found.detections),
        "detectors_mb_s": {"no_pii": detectors_mb_s(clean, args.seconds), "pii": detectors_mb_s(dirty, args.seconds)},
        "injection_mb_s": {"no_pii": injection_mb_s(clean, args.seconds), "pii": injection_mb_s(dirty, args.seconds)},
        "restore": restore_us_per_chunk(args.seconds),
    }
    if args.gateway:
        results["gateway"] = gateway_added(args.requests)
    write_results(results, args.out, summary(results))
    return 0


def summary(r: dict) -> str:
    d, i = r["detectors_mb_s"], r["injection_mb_s"]
    return "\n".join(
        [
            "",
            f"detectors (all 8, masking) on a {r['prompt_bytes']} B prompt: {d['no_pii']} MB/s without PII, "
            f"{d['pii']} MB/s with {r['values_in_pii_prompt']} values in it",
            f"injection heuristics: {i['no_pii']} MB/s / {i['pii']} MB/s",
            f"restoring a {r['restore']['chunks']}-chunk stream: +{r['restore']['added_us_per_chunk']} µs per chunk",
            *(
                f"through the gateway at concurrency {g['concurrency']}: masking adds {g['added_p50_ms']} ms at p50, "
                f"{g['added_p99_ms']} ms at p99 ({g['no_rules_ms']} vs {g['masking_ms']}; {g['requests_per_s']} req/s)"
                for g in r.get("gateway", [])
            ),
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
