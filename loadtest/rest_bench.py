"""`make bench-rest`: what a plain REST service costs through Sluice, against
the same upstream called directly, in one run on this machine; and how long
the portal's catalog takes to render with 500 APIs.

nginx (Debian's package, as `make bench` runs it) is the service: under
``/api`` it answers ``GET /items/<id>`` with a fixed ~1 KB JSON document,
echoes the body of ``POST /echo``, and serves a 50 MB file at
``/files/blob.bin``. Sluice runs as `sluice up` runs it (every process the
supervisor starts, events into the embedded ClickHouse) with that nginx as
the one instance of the ``[[services]]`` entry ``bench-rest`` (an OpenAPI
document, so rows carry route templates, and a price per call), and a key
with limits and a budget as `make bench` uses. wrk drives nginx directly
and ``/services/bench-rest/...`` through Sluice:

1. GET at 1 connection (the added p50: Sluice minus direct) and at 64
   (requests/s, and Sluice's share of direct's); POST of 1 KB at 64;
   p50/p99 of each, CPU µs per request of every process, the median time
   per part from the requests rows at 1 connection;
2. every answer checked: one call of each kind compared byte for byte
   before wrk repeats it, wrk's non-2xx and socket errors counted (must be
   0), and ClickHouse's ``rest_calls`` rows of the service against what was
   sent;
3. a 50 MB download through the gateway against direct (MB/s), and the
   RSS of the ingress and the provider stage's process before, at peak
   during, and after it (a body is streamed, never held whole);
4. the catalog with 500 APIs: ``render_catalog`` over 500 entries of
   every kind built from sources (median of ``--renders`` runs, ms), and
   GET /portal as a signed-in developer through the running stack once the
   gateway has 500 services (median of 20 requests).

    python -m loadtest.rest_bench [--duration 10] [--out loadtest/results/rest_bench.json]

Needs nginx and wrk (`make bench-tools` installs them with apt-get when missing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import httpx

from loadtest.bench import BUDGET, LIMITS, breakdown, cpu_seconds, parse_wrk, rss_mb, write_results
from loadtest.catalog_render import catalog_render_ms
from loadtest.nginx_bench import NGINX, nginx
from schemas import subjects
from schemas.control import ApiKey
from schemas.people import User
from schemas.people import kv_encode as people_encode
from schemas.rest import RestInstance, RestService, kv_encode, service_key
from services.bus import process
from services.bus.kv import kv_key
from services.cli.layout import Layout
from services.cli.named_query import query
from services.cli.nats_server import free_port
from services.cli.supervisor import Supervisor
from services.people import accounts, passwords

KEY = "sk-bench-rest-0123456789"
SLUG = "bench-rest"
CONCURRENCY = 64
DOWNLOAD_MB = 50
CATALOG_APIS = 500
EMAIL = "bench@rest-bench.test"
PASSWORD = "a long enough bench password"

# ~1 KB: what a typical JSON API answers for one record.
ITEM = json.dumps(
    {
        "id": "42",
        "name": "widget",
        "price": 9.5,
        "tags": ["bench", "rest", "sluice"],
        "description": "A fixed record nginx answers for every id. " * 22,
    }
)
# ~1 KB request body for the POST, echoed back.
POST_BODY = json.dumps({"name": "widget", "note": "A record the bench posts and the echo returns. " * 21})

# nginx cannot echo a body by itself: a proxy to a socket nobody listens on
# reads it (one buffer), fails at once with a 502, and the named location
# the 502 is sent to answers with the body read.
LOCATIONS = """
        location /api/items/ {
            default_type application/json;
            return 200 '@ITEM@';
        }
        location = /api/echo {
            client_body_buffer_size 64k;
            client_body_in_single_buffer on;
            client_max_body_size 64k;
            error_log /dev/null crit;
            proxy_pass http://unix:@HOME@/nobody-listens.sock;
            error_page 502 = @echo;
        }
        location @echo {
            default_type application/json;
            return 200 $request_body;
        }
        location /api/files/ {
            alias @HOME@/files/;
            types { }
            default_type application/octet-stream;
        }
"""

OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "Bench REST", "version": "1.0.0"},
    "paths": {
        "/items/{id}": {"get": {"summary": "Read an item", "responses": {"200": {"description": "The item"}}}},
        "/echo": {"post": {"summary": "Echo a body", "responses": {"200": {"description": "The body sent"}}}},
        "/files/{name}": {"get": {"summary": "Download a file", "responses": {"200": {"description": "Its bytes"}}}},
    },
}

SLUICE_CONFIG = """
[gateway]
request_timeout_s = 30

[[tenants]]
id = "bench"
limits = {{ rpm = 1000000000, tpm = 1000000000000, max_parallel = 100000 }}
budget = {{ usd = "1000000.00", period = "monthly" }}

[[services]]
slug = "{slug}"
title = "Bench REST"
description = "nginx with fixed answers, for make bench-rest."
instances = [{{ url = "http://127.0.0.1:{ngx}/api" }}]
read_timeout_s = 30
price_pico_usd = 1000000
openapi_path = "bench-rest.openapi.json"
"""

GET_LUA = """
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer {key}"
"""
POST_LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


def nginx_pids(home: Path) -> dict[str, int]:
    """nginx's worker (its master only forks it), to count its CPU too."""
    master = int((home / "nginx.pid").read_text())
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {f"nginx-{i}" if i else "nginx": int(pid) for i, pid in enumerate(children)}


def wrk(url: str, script: Path, concurrency: int, duration: int, pids: dict[str, int]) -> dict:
    """As ``loadtest.bench.run_wrk``, with wrk's non-2xx answers counted apart from its socket errors."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    cmd = ["wrk", f"-t{min(2, concurrency)}", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    result = parse_wrk(out)
    found = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(found.group(1)) if found else 0
    n = max(1, result["requests"])
    result["cpu_us_per_request"] = {
        name: round((cpu_seconds(pid) - before[name]) / n * 1e6, 1) for name, pid in pids.items()
    }
    return result


def check_answers(urls: dict[str, str], post: dict[str, str]) -> None:
    """One call of each kind, each way, before wrk repeats it: a refusal
    would make fast, meaningless numbers."""
    auth = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(timeout=30) as client:
        for target, url in urls.items():
            got = client.get(url, headers=auth)
            if got.status_code != 200 or got.text != ITEM:
                raise RuntimeError(f"GET {url} ({target}) answered {got.status_code}: {got.text[:300]}")
        for target, url in post.items():
            got = client.post(url, content=POST_BODY, headers=auth | {"content-type": "application/json"})
            if got.status_code != 200 or got.text != POST_BODY:
                raise RuntimeError(f"POST {url} ({target}) answered {got.status_code}: {got.text[:300]}")


def wait_for_service(url: str, timeout: float = 60) -> None:
    """Until the ingress's mirror has the service and a call reaches nginx."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            got = httpx.get(url, headers={"authorization": f"Bearer {KEY}"}, timeout=10)
            if got.status_code == 200:
                return
            last = f"{got.status_code} {got.text[:300]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s (last: {last})")


def rest_rows(layout: Layout, admin: str, since_ns: int, answered: int, timeout: float = 30) -> dict:
    """The service's rows in ClickHouse: per route (named query rest_calls)
    and per status since ``since_ns`` (outcomes), once the sink has written
    at least ``answered`` 200s or their count stopped growing."""
    deadline = time.monotonic() + timeout
    seen = -1
    while True:
        calls = asyncio.run(query("rest_calls", {"hours": 1, "service": SLUG}, layout.nats_url, creds=admin))
        ends = asyncio.run(
            query("outcomes", {"since_ns": since_ns, "tenant_id": "bench"}, layout.nats_url, creds=admin)
        )
        if calls.get("error") or ends.get("error"):
            return {"error": calls.get("error") or ends.get("error")}
        rows = [dict(zip(calls["columns"], row, strict=True)) for row in calls["rows"]]
        statuses: dict[str, int] = {}
        for row in ends["rows"]:
            end = dict(zip(ends["columns"], row, strict=True))
            name = str(end["status"]) + (f" {end['error_code']}" if end["error_code"] else "")
            statuses[name] = statuses.get(name, 0) + end["requests"]
        now = {
            "calls": sum(r["calls"] for r in rows),
            "errors": sum(r["errors"] for r in rows),
            "by_route": {f"{r['method']} {r['route'] or '-'}": r["calls"] for r in rows},
            "by_status": statuses,
        }
        ok = statuses.get("200", 0)
        if ok >= answered or ok == seen or time.monotonic() > deadline:
            return now
        seen = ok
        time.sleep(2)


class RssPeak:
    """The highest RSS sum of some processes, sampled every 20 ms while open."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak: dict[str, float] = {name: 0.0 for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_mb(pid))
            self._stop.wait(0.02)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def download(url: str, expect_crc: int) -> dict:
    """One download, read as it comes; MB/s, and its bytes checked."""
    size, crc = 0, 0
    started = time.perf_counter()
    with httpx.stream("GET", url, headers={"authorization": f"Bearer {KEY}"}, timeout=60) as resp:
        status = resp.status_code
        for part in resp.iter_raw(1 << 16):
            size += len(part)
            crc = zlib.crc32(part, crc)
    took = time.perf_counter() - started
    ok = status == 200 and size == DOWNLOAD_MB << 20 and crc == expect_crc
    return {
        "status": status,
        "bytes": size,
        "intact": ok,
        "s": round(took, 3),
        "mb_per_s": round(size / 2**20 / took, 1),
    }


def downloads(direct: str, gateway: str, files: Path, watched: dict[str, int], runs: int = 3) -> dict:
    blob = files / "blob.bin"
    crc = 0
    with blob.open("wb") as f:  # random bytes: nothing on the way may shrink them
        for _ in range(DOWNLOAD_MB):
            part = os.urandom(1 << 20)
            crc = zlib.crc32(part, crc)
            f.write(part)
    out: dict[str, Any] = {"mb": DOWNLOAD_MB, "rss_mb_before": {n: round(rss_mb(p), 1) for n, p in watched.items()}}
    out["direct"] = [download(direct, crc) for _ in range(runs)]
    with RssPeak(watched) as peak:
        out["sluice"] = [download(gateway, crc) for _ in range(runs)]
    time.sleep(1)
    out["rss_mb_peak"] = {n: round(v, 1) for n, v in peak.peak.items()}
    out["rss_mb_after"] = {n: round(rss_mb(p), 1) for n, p in watched.items()}
    for target in ("direct", "sluice"):
        out[f"{target}_mb_per_s"] = statistics.median(r["mb_per_s"] for r in out[target])
    out["intact"] = all(r["intact"] for r in out["direct"] + out["sluice"])
    return out


# --- the catalog through the stack ------------------------------------------------------------------------------


async def _put_records(layout: Layout, admin: str, ngx: int, services: int) -> None:
    """A developer of tenant bench who can sign in (as the people's store
    writes an accepted invitation), and ``services`` more REST services, so
    the gateway has 500 to show."""
    user = User(
        id=accounts.user_id_for(EMAIL),
        email=EMAIL,
        tenant_id="bench",
        password_hash=passwords.hash_password(PASSWORD),
        created_at_ms=int(time.time() * 1000),
    )
    nc = await process.connect_tool(layout.nats_url, admin)
    try:
        js = nc.jetstream()
        users = await js.key_value(subjects.KV_USERS)
        await users.put(kv_key(user.id), people_encode(user))
        kv = await js.key_value(subjects.KV_SERVICES)
        for i in range(services):
            record = RestService(
                slug=f"catalog-{i:03d}",
                title=f"Catalog service {i}",
                description="One of the catalog's 500 APIs. " * 3,
                instances=[RestInstance(url=f"http://127.0.0.1:{ngx}/api")],
                state="deprecated" if i % 10 == 0 else "published",
                successor=f"catalog-{i + 1:03d}" if i % 10 == 0 else "",
                requires_approval=i % 3 == 0,
                price_pico_usd=1_000_000 * (i % 4),
                created_at_ms=int(time.time() * 1000),
                owner="api",
            )
            await kv.put(kv_key(service_key(record.slug, 1)), kv_encode(record))
    finally:
        await nc.close()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    if found is None:
        raise RuntimeError(f"no CSRF field on the sign-in page: {html[:300]}")
    return found.group(1)


def _listed(html: str) -> int:
    return len(re.findall(r'<h2><a href="/portal/apis/', html))


def portal_get_ms(layout: Layout, admin: str, ngx: int, runs: int = 20) -> dict:
    """GET /portal as a signed-in developer with 500 services in the
    gateway: the whole page through the ingress (session, entries from its
    mirrors, analytics' health cached, render)."""
    asyncio.run(_put_records(layout, admin, ngx, CATALOG_APIS - 1))
    origin = f"http://127.0.0.1:{layout.http_port}"
    with httpx.Client(base_url=origin, timeout=30, follow_redirects=False) as client:
        deadline = time.monotonic() + 30
        while True:  # until the ingress's mirror of the users has the new one
            form = {"email": EMAIL, "password": PASSWORD, "csrf": _csrf(client.get("/portal/sign-in").text)}
            answer = client.post("/portal/sign-in", data=form | {"next": "/portal"})
            if answer.status_code == 303:
                break
            if answer.status_code != 401 or time.monotonic() > deadline:
                return {"error": f"sign-in answered {answer.status_code}: {answer.text[:300]}"}
            time.sleep(0.3)
        while True:  # until its mirror of the services has all of them
            page = client.get("/portal")
            if page.status_code != 200:
                return {"error": f"/portal answered {page.status_code}: {page.text[:300]}"}
            if _listed(page.text) >= CATALOG_APIS:
                break
            if time.monotonic() > deadline:
                return {"error": f"the catalog listed {_listed(page.text)} APIs after 30 s, not {CATALOG_APIS}"}
            time.sleep(0.5)
        took = []
        for _ in range(runs):
            started = time.perf_counter()
            page = client.get("/portal")
            took.append((time.perf_counter() - started) * 1000)
            if page.status_code != 200 or _listed(page.text) < CATALOG_APIS:
                return {"error": f"/portal answered {page.status_code} listing {_listed(page.text)}"}
    return {
        "apis": _listed(page.text),
        "runs": runs,
        "median_ms": round(statistics.median(took), 2),
        "max_ms": round(max(took), 2),
        "page_kb": round(len(page.content) / 1024, 1),
    }


# --- the run ----------------------------------------------------------------------------------------------------


def measure(root: Path, duration: int, renders: int) -> dict:
    result: dict[str, Any] = {"runs": {}}
    with nginx(root / "nginx", LOCATIONS.replace("@ITEM@", ITEM).replace("@HOME@", str(root / "nginx"))) as ngx:
        files_of(root).mkdir()
        home = root / "sluice"
        home.mkdir()
        (home / "bench-rest.openapi.json").write_text(json.dumps(OPENAPI))
        (home / "sluice.toml").write_text(SLUICE_CONFIG.format(slug=SLUG, ngx=ngx))
        layout = Layout(
            home=home, config=home / "sluice.toml", nats_port=free_port(), http_port=free_port(), mock_port=None
        )
        sup = Supervisor(layout, extra_keys={KEY: ApiKey(id="bench", tenant_id="bench", limits=LIMITS, budget=BUDGET)})
        print(f"starting Sluice in {home} ...", flush=True)
        sup.start()
        try:
            result |= _measure(layout, sup, root, ngx, duration)
        finally:
            sup.stop()
    result["catalog_render"] = catalog_render_ms(CATALOG_APIS, renders)
    print(f"  catalog of {CATALOG_APIS} APIs rendered: {json.dumps(result['catalog_render'])}", flush=True)
    return result


def _measure(layout: Layout, sup: Supervisor, root: Path, ngx: int, duration: int) -> dict:
    result: dict[str, Any] = {"runs": {}}
    admin = str(sup.creds_path("admin"))
    gw = f"http://127.0.0.1:{layout.http_port}/services/{SLUG}"
    direct = f"http://127.0.0.1:{ngx}/api"
    urls = {"direct": direct, "sluice": gw}
    wait_for_service(f"{gw}/items/42")
    check_answers({t: f"{u}/items/42" for t, u in urls.items()}, {t: f"{u}/echo" for t, u in urls.items()})
    # The rows compared with what wrk saw are the ones from here on.
    since = time.time_ns()
    answered = 0
    # What wrk has in flight when it stops is cut: the client left (499).
    cut_at_most = 0

    pids = sup.pids()
    ngx_pids = nginx_pids(root / "nginx")
    watched = {"direct": ngx_pids, "sluice": pids | ngx_pids}
    get_lua = root / "get.lua"
    get_lua.write_text(GET_LUA.format(key=KEY))
    post_lua = root / "post.lua"
    post_lua.write_text(POST_LUA.format(body=json.dumps(POST_BODY), key=KEY))
    plan = [("GET", get_lua, "/items/42", 1), ("GET", get_lua, "/items/42", CONCURRENCY)]
    plan.append(("POST", post_lua, "/echo", CONCURRENCY))
    for method, script, path, c in plan:
        for target in ("direct", "sluice"):
            url = urls[target] + path
            warm = wrk(url, script, c, 2, watched[target])
            started = time.time_ns()
            r = wrk(url, script, c, duration, watched[target])
            if target == "sluice":
                answered += warm["requests"] + r["requests"]
                cut_at_most += 2 * c
                if c == 1:
                    r["breakdown_ms"] = breakdown(layout.nats_url, started, time.time_ns(), admin)
            name = f"{target} {method} c={c}"
            result["runs"][name] = r
            print(
                f"  {name:20} {r['rps']:>8.0f}/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                f"non-2xx {r['non_2xx']}  errors {r['errors']}",
                flush=True,
            )
            time.sleep(0.5)

    result["clickhouse"] = rest_rows(layout, admin, since, answered)
    result["clickhouse"] |= {"answered": answered, "cut_at_most": cut_at_most}
    print(f"  ClickHouse rest_calls of {SLUG}: {json.dumps(result['clickhouse'])}", flush=True)

    provider = layout.process_of("provider")
    memory = {"ingress": pids["ingress"], provider: pids[provider]}
    result["download"] = downloads(f"{direct}/files/blob.bin", f"{gw}/files/blob.bin", files_of(root), memory)
    d = result["download"]
    print(
        f"  {DOWNLOAD_MB} MB download: direct {d['direct_mb_per_s']} MB/s, sluice {d['sluice_mb_per_s']} MB/s, "
        f"intact {d['intact']}; RSS before {d['rss_mb_before']} peak {d['rss_mb_peak']} after {d['rss_mb_after']}",
        flush=True,
    )
    result["portal_get"] = portal_get_ms(layout, admin, ngx)
    print(f"  GET /portal with {CATALOG_APIS} services, signed in: {json.dumps(result['portal_get'])}", flush=True)
    return result


def files_of(root: Path) -> Path:
    return root / "nginx" / "files"


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def figures(results: dict) -> dict:
    runs = results["runs"]
    g1, d1 = runs["sluice GET c=1"], runs["direct GET c=1"]
    c = CONCURRENCY
    g64, d64 = runs[f"sluice GET c={c}"], runs[f"direct GET c={c}"]
    p64, pd64 = runs[f"sluice POST c={c}"], runs[f"direct POST c={c}"]
    dl = results["download"]
    return {
        "get_p50_ms_c1": {
            "sluice": g1["p50_ms"],
            "direct": d1["p50_ms"],
            "added": round(g1["p50_ms"] - d1["p50_ms"], 3),
        },
        "get_p99_ms_c1": {"sluice": g1["p99_ms"], "direct": d1["p99_ms"]},
        f"get_rps_c{c}": {"sluice": g64["rps"], "direct": d64["rps"], "ratio": _ratio(g64["rps"], d64["rps"])},
        f"post_1kb_rps_c{c}": {"sluice": p64["rps"], "direct": pd64["rps"], "ratio": _ratio(p64["rps"], pd64["rps"])},
        f"sluice_cpu_us_per_get_c{c}": round(
            sum(v for k, v in g64["cpu_us_per_request"].items() if "nginx" not in k), 1
        ),
        "download_mb_per_s": {"sluice": dl["sluice_mb_per_s"], "direct": dl["direct_mb_per_s"]},
        "catalog_render_ms_500": results["catalog_render"]["render_median_ms"],
        "portal_get_ms_500": results["portal_get"].get("median_ms"),
    }


def summary(results: dict) -> str:
    f, runs, c = results["summary"], results["runs"], CONCURRENCY
    p50, rps, post = f["get_p50_ms_c1"], f[f"get_rps_c{c}"], f[f"post_1kb_rps_c{c}"]
    dl, cat = results["download"], results["catalog_render"]
    answered = results["clickhouse"].get("answered")
    lines = [
        "",
        f"GET p50 at 1 connection: sluice {p50['sluice']:.2f} ms, direct {p50['direct']:.2f} ms, "
        f"added {p50['added']:.2f} ms (p99 {f['get_p99_ms_c1']['sluice']:.2f} / {f['get_p99_ms_c1']['direct']:.2f})",
        f"GET requests/s at {c} connections: sluice {rps['sluice']:.0f}, direct {rps['direct']:.0f} "
        f"(sluice/direct {rps['ratio']}); Sluice CPU {f[f'sluice_cpu_us_per_get_c{c}']:.0f} µs per request",
        f"POST 1 KB requests/s at {c}: sluice {post['sluice']:.0f}, direct {post['direct']:.0f} "
        f"(sluice/direct {post['ratio']})",
        f"{dl['mb']} MB download: sluice {dl['sluice_mb_per_s']} MB/s, direct {dl['direct_mb_per_s']} MB/s; "
        + "RSS MB before/peak/after: "
        + ", ".join(
            f"{n} {dl['rss_mb_before'][n]}/{dl['rss_mb_peak'][n]}/{dl['rss_mb_after'][n]}" for n in dl["rss_mb_before"]
        ),
        f"catalog of {cat['apis']} APIs: render {cat['render_median_ms']} ms, entries built in "
        f"{cat['build_median_ms']} ms (median of {cat['runs']})",
        "GET /portal (500 services, signed in): "
        + (
            f"{results['portal_get']['median_ms']} ms median"
            if "median_ms" in results["portal_get"]
            else results["portal_get"]["error"]
        ),
        f"ClickHouse: {results['clickhouse'].get('calls')} rows of api 'rest' for {SLUG}, "
        f"by status since the load began {results['clickhouse'].get('by_status')}, wrk saw {answered} answers",
        "CPU µs per request, by process:",
    ]
    for name, r in runs.items():
        lines.append(f"  {name:20} " + "  ".join(f"{k}={v:.0f}" for k, v in r["cpu_us_per_request"].items()))
    parts = {k: v for k, v in runs["sluice GET c=1"].get("breakdown_ms", {}).items() if k not in ("stream", "requests")}
    lines.append("Median ms per part, GET at 1 connection (requests rows): ")
    lines.append("  " + "  ".join(f"{k.removesuffix('_ms')}={v}" for k, v in parts.items()))
    lines += warnings(results)
    return "\n".join(lines)


def warnings(results: dict) -> list[str]:
    out = []
    for name, r in results["runs"].items():
        if r["non_2xx"] or r["errors"]:
            out.append(f"WARNING {name}: {r['non_2xx']} non-2xx answers, {r['errors'] - r['non_2xx']} socket errors")
    ch = results["clickhouse"]
    if "error" in ch:
        out.append(f"WARNING ClickHouse: {ch['error']}")
    else:
        statuses = dict(ch["by_status"])
        ok, cut = statuses.pop("200", 0), sum(n for s, n in statuses.items() if s.startswith("499"))
        if ok < ch["answered"]:
            out.append(f"WARNING ClickHouse has {ok} rows of status 200, wrk and the checks saw {ch['answered']}")
        if cut > ch["cut_at_most"] or len(statuses) > (1 if cut else 0):
            out.append(
                f"WARNING ClickHouse's rows other than 200: {statuses} (at most {ch['cut_at_most']} 499s expected)"
            )
    if not results["download"]["intact"]:
        out.append("WARNING a download came back short, altered or not 200")
    if "error" in results["portal_get"]:
        out.append(f"WARNING GET /portal: {results['portal_get']['error']}")
    return out or [
        "every answer checked: 0 non-2xx; ClickHouse has a 200 row for every answer (and 499s only for calls "
        "wrk left in flight when it stopped); downloads intact"
    ]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.rest_bench")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (each after 2 s of warm-up)")
    parser.add_argument("--renders", type=int, default=50, help="catalog renders timed (median)")
    parser.add_argument("--out", default="loadtest/results/rest_bench.json")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (logs, configs) to look into")
    args = parser.parse_args()
    for tool in (NGINX, "wrk"):
        if not shutil.which(tool):
            print(f"{tool} not found: `make bench-tools` installs it (apt-get install nginx wrk)", file=sys.stderr)
            return 2
    root = Path(tempfile.mkdtemp(prefix="sluice-rest-bench-"))
    results: dict[str, Any] = {"cpus": os.cpu_count(), "duration_s": args.duration}
    try:
        results |= measure(root, args.duration, args.renders)
    finally:
        if args.keep:
            print(f"kept {root} (Sluice's logs in sluice/logs)")
        else:
            shutil.rmtree(root, ignore_errors=True)
    results["summary"] = figures(results)
    write_results(results, args.out, summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
