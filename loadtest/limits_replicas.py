"""How exact the limits are across replicas: two policy and two ingress
processes, a fresh key with RPM 100 per round (made over the admin API), and
300 concurrent requests spread over both ingresses. Reports, per round, how
many were admitted; the limit must never be passed, and what is reported is
how far under it the leases left the count.

    python -m loadtest.limits_replicas [--rounds 10] [--requests 300] [--rpm 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from loadtest.bench import CONFIG
from schemas.control import ApiKey
from services.cli.layout import Layout
from services.cli.nats_server import free_port
from services.cli.supervisor import Supervisor

ADMIN_KEY = "sk-bench-admin-0123456789"
BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "hi [mock:chunks=1]"}]}


async def one_round(admin_url: str, bases: list[str], requests: int, rpm: int, concurrency: int) -> dict:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:
        made = await client.post(
            f"{admin_url}/keys",
            json={"tenant": "bench", "limits": {"rpm": rpm}},
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
        )
        made.raise_for_status()
        secret = made.json()["secret"]
        await asyncio.sleep(1.0)  # every stage sees a new key within a second
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> int:
            async with gate:
                resp = await client.post(
                    f"{bases[i % len(bases)]}/chat/completions",
                    json=BODY,
                    headers={"authorization": f"Bearer {secret}"},
                )
                return resp.status_code

        t0 = time.perf_counter()
        statuses = Counter(await asyncio.gather(*(one(i) for i in range(requests))))
        return {"statuses": dict(statuses), "admitted": statuses[200], "seconds": round(time.perf_counter() - t0, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.limits_replicas")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rpm", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--out", default="loadtest/results/limits_replicas.json")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="sluice-replicas-"))
    mock = free_port()
    (home / "sluice.toml").write_text(CONFIG.format(mock=mock, provider="openai", base_path="/v1", model="gpt-4o-mini"))
    extra = free_port()
    layout = Layout(
        home=home,
        config=home / "sluice.toml",
        nats_port=free_port(),
        http_port=free_port(),
        mock_port=mock,
        replicas={"policy": 2},
        extra_http_ports=[extra],
    )
    sup = Supervisor(layout, extra_keys={ADMIN_KEY: ApiKey(id="admin", tenant_id="", role="gateway_admin")})
    print(f"starting 2 policy + 2 ingress in {home} ...", flush=True)
    sup.start()
    rounds = []
    try:
        bases = [f"http://127.0.0.1:{p}/v1" for p in (layout.http_port, extra)]
        admin_url = f"http://127.0.0.1:{layout.http_port}/admin/v1"
        for i in range(args.rounds):
            r = asyncio.run(one_round(admin_url, bases, args.requests, args.rpm, args.concurrency))
            rounds.append(r)
            print(
                f"round {i + 1}: admitted {r['admitted']} of {args.requests} (limit {args.rpm}) "
                f"statuses {r['statuses']} in {r['seconds']} s",
                flush=True,
            )
    finally:
        sup.stop()
        shutil.rmtree(home, ignore_errors=True)
    admitted = [r["admitted"] for r in rounds]
    result = {
        "rpm": args.rpm,
        "requests": args.requests,
        "rounds": rounds,
        "max_admitted": max(admitted),
        "min_admitted": min(admitted),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\nadmitted per round: {admitted}; most {max(admitted)}, fewest {min(admitted)} "
        f"(worst under-admission {args.rpm - min(admitted)})"
    )
    return 0 if max(admitted) <= args.rpm else 1


if __name__ == "__main__":
    sys.exit(main())
