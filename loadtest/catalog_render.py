"""The portal's catalog page with many APIs: how long building its entries
and rendering it take, without I/O (``ingress.portal.entries.build`` and
``ingress.portal.catalog.render_catalog``, what GET /portal runs after
reading the ingress's mirrors).

The sources are as the ingress's mirrors hold them, in equal parts: model
groups of two deployments (priced from the catalog), prompt APIs with
variables and an output schema, REST services, and MCP servers of six tools
each; one in ten deprecated with a successor, some behind approval with the
tenant's subscriptions in every state, and the last hour's health known for
all. Seen by a developer of the tenant, as the page is for them.

    python -m loadtest.catalog_render [--apis 500] [--runs 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

from ingress.portal.catalog import render_catalog
from ingress.portal.entries import Entry, Sources, build
from ingress.portal.health import Health, Stats
from schemas.control import ModelRoute, Subscription, Tenant
from schemas.envelope import Deployment
from schemas.mcp import CatalogTool, McpServer, ServerCatalog, ToolAnnotations, tool_name
from schemas.prompts import Prompt, PromptApi, PromptVersion, Variable
from schemas.rest import RestService, service_model
from services.portal_access import subscription_name
from services.portal_scope import Who
from services.prompt_api import PromptBook

TENANT = "bench"
WHO = Who(user_id="usr_bench", role="developer", tenant_id=TENANT)
SUNSET_MS = 1_893_456_000_000
CATALOG_MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
STANDINGS = ("pending", "approved", "rejected")
TEXT = "An API of the catalog bench, described as a team would describe it. "
OUTPUT = {"type": "object", "properties": {"label": {"type": "string"}, "score": {"type": "number"}}}


def _lifecycle(i: int, prefix: str) -> dict:
    if i % 10:
        return {"state": "published"}
    return {"state": "deprecated", "successor": f"{prefix}-{i + 1}", "sunset_at_ms": SUNSET_MS}


def sources(apis: int) -> Sources:
    """``apis`` APIs, a quarter of each kind, with health and subscriptions."""
    per = apis // 4
    extra = apis - 4 * per  # to the model groups, so the total is exact
    routes = [
        ModelRoute(
            name=f"model-{i}",
            aliases=[f"model-{i}-latest"],
            deployments=[
                Deployment(
                    name=f"model-{i}-{side}",
                    provider=provider,
                    base_url="http://127.0.0.1:9/v1",
                    upstream_model=CATALOG_MODELS[i % 3],
                    catalog_model=CATALOG_MODELS[i % 3],
                )
                for side, provider in (("a", "openai"), ("b", "azure"))
            ],
        )
        for i in range(per + extra)
    ]
    prompts, versions = {}, {}
    for i in range(per):
        life = _lifecycle(i, "prompt")
        prompts[f"p{i}"] = Prompt(
            name=f"p{i}",
            labels={"production": 1},
            api=PromptApi(slug=f"prompt-{i}", requires_approval=i % 3 == 0, **life),
        )
        versions[f"p{i}.1"] = PromptVersion(
            prompt=f"p{i}",
            version=1,
            model=f"model-{i}",
            variables=[Variable(name=f"v{n}", description=TEXT) for n in range(4)],
            output_schema=OUTPUT if i % 2 else None,
            note=TEXT * 2,
        )
    services = [
        RestService(
            slug=f"service-{i}",
            title=f"Service {i}",
            description=TEXT * 3,
            requires_approval=i % 3 == 0,
            price_pico_usd=1_000_000 * (i % 4),
            rpm=600 if i % 5 == 0 else None,
            **_lifecycle(i, "service"),
        )
        for i in range(per)
    ]
    servers = {
        f"mcp-{i}": McpServer(name=f"mcp-{i}", description=TEXT, requires_approval=i % 3 == 0) for i in range(per)
    }
    read_only = ToolAnnotations(readOnlyHint=True)
    catalogs = {
        name: ServerCatalog(server=name, tools=[CatalogTool(name=f"tool_{n}", annotations=read_only) for n in range(6)])
        for name in servers
    }
    subscriptions = [
        Subscription(id=f"s-{kind}-{i}", tenant_id=TENANT, model=model, state=STANDINGS[i % 3], reason="bench")
        for i in range(0, per, 3)
        for kind, model in (
            ("prompt", subscription_name("prompt", f"prompt-{i}")),
            ("service", subscription_name("service", f"service-{i}")),
            ("mcp", subscription_name("mcp", f"mcp-{i}")),
        )
    ]
    health = Health(1200, 12, 180.0)
    by_model = {r.name: health for r in routes}
    by_model |= {service_model(s.slug, 1): health for s in services}
    by_model |= {tool_name(name, f"tool_{n}"): health for name in servers for n in range(6)}
    return Sources(
        routes=routes,
        prompts=PromptBook(prompts, versions).published(),
        services=services,
        mcp_servers=servers,
        mcp_catalogs=catalogs,
        tenants={TENANT: Tenant(id=TENANT, mcp_tools=["*"])},
        subscriptions=subscriptions,
        stats=Stats(by_model=by_model, by_prompt={p: health for p in prompts}, known=True),
    )


def _median_ms(run: Callable[[], object], runs: int) -> float:
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        took.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(took), 2)


def catalog_render_ms(apis: int = 500, runs: int = 50) -> dict:
    """Median ms to build the entries and to render the page, over ``runs`` runs each."""
    src = sources(apis)
    entries: list[Entry] = build(src, WHO)
    if len(entries) != apis:
        raise RuntimeError(f"the sources made {len(entries)} entries, not {apis}")
    html = render_catalog(entries)  # templates compiled once, as a running ingress has them
    return {
        "apis": len(entries),
        "runs": runs,
        "build_median_ms": _median_ms(lambda: build(src, WHO), runs),
        "render_median_ms": _median_ms(lambda: render_catalog(entries), runs),
        "page_kb": round(len(html.encode()) / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.catalog_render")
    parser.add_argument("--apis", type=int, default=500)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(catalog_render_ms(args.apis, args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
