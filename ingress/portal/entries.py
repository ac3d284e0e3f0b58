"""The catalog's entries, without I/O: every API the signed-in person's
tenant may see, as the gateway would treat its calls, with what a developer
needs to choose one (prices, context window, variables, methods, tools),
its lifecycle, where the tenant stands with access, and its health.

Who sees what follows the gateway's own rules: model groups are every
tenant's (a key's model patterns are per key, not per tenant); prompt APIs
and REST services that are drafts or retired are nobody's; an MCP server
shows only the tools the tenant's patterns and safety allow
(``services.mcp_access``), and not at all when none is. A gateway admin
has no tenant and sees everything, with no standing of its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from ingress.portal.health import Health, Stats
from schemas.control import ApiKey, ApprovalRule, ModelRoute, Subscription, Tenant
from schemas.mcp import McpServer, ServerCatalog, tool_name
from schemas.prompts import Prompt, PromptVersion
from schemas.rest import PATH_PREFIX, RestService, service_model
from services import mcp_access, pricing
from services.portal_access import Access, access_of, model_needs_approval, subscription_name
from services.portal_scope import Who

Kind = Literal["model", "prompt", "service", "mcp"]
KINDS: tuple[Kind, ...] = ("model", "prompt", "service", "mcp")
KIND_LABELS: dict[str, str] = {"model": "Model", "prompt": "Prompt API", "service": "REST service", "mcp": "MCP server"}
STATES = ("published", "deprecated")
DOCS_PREFIX = "/portal/apis"
# What an entry quotes of a long list (tools, variables) in the catalog;
# its docs page has them all.
LISTED = 8
# A search term is compared, not interpreted; past this it is cut.
MAX_QUERY = 200


@dataclass(frozen=True, slots=True)
class Entry:
    kind: Kind
    # As in the docs page's URL: a group's name, a slug (``slug.v2`` for a
    # service's later version), a server's name.
    name: str
    title: str
    description: str = ""
    state: str = "published"
    successor: str = ""
    sunset_at_ms: int = 0
    access: Access | None = None
    # (label, value) pairs shown as they are (escaped by the template).
    facts: tuple[tuple[str, str], ...] = ()
    # A call to copy, when one line says it (a prompt API's).
    example: str = ""
    health: Health | None = None
    health_known: bool = False
    # An MCP server's tools the person's tenant may use (by the server's names).
    tools: tuple[str, ...] = ()
    search_text: str = field(default="", repr=False)

    @property
    def href(self) -> str:
        return f"{DOCS_PREFIX}/{self.kind}/{quote(self.name, safe='')}"

    @property
    def kind_label(self) -> str:
        return KIND_LABELS[self.kind]

    @property
    def sunset(self) -> str:
        return day(self.sunset_at_ms)


@dataclass(frozen=True, slots=True)
class Sources:
    """What the catalog is made from (the ingress's mirrors, or fixtures)."""

    routes: Iterable[ModelRoute] = ()
    # ``PromptBook.published()``: each API's prompt, served version and output schema.
    prompts: Iterable[tuple[Prompt, PromptVersion, dict[str, Any] | None]] = ()
    services: Iterable[RestService] = ()
    mcp_servers: Mapping[str, McpServer] = field(default_factory=dict)
    mcp_catalogs: Mapping[str, ServerCatalog] = field(default_factory=dict)
    tenants: Mapping[str, Tenant] = field(default_factory=dict)
    subscriptions: Iterable[Subscription] = ()
    approval_rules: Iterable[ApprovalRule] = ()
    stats: Stats = field(default_factory=Stats)


@dataclass(frozen=True, slots=True)
class Filters:
    """The catalog's query string, checked: anything unknown means "all"."""

    q: str = ""
    kind: str = ""
    state: str = ""

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Filters:
        q = " ".join(str(params.get("q", "")).split())[:MAX_QUERY]
        kind = params.get("kind", "")
        state = params.get("state", "")
        return cls(q=q, kind=kind if kind in KINDS else "", state=state if state in STATES else "")

    def keeps(self, entry: Entry) -> bool:
        if self.kind and entry.kind != self.kind:
            return False
        if self.state and entry.state != self.state:
            return False
        return all(word in entry.search_text for word in self.q.lower().split())

    @property
    def active(self) -> bool:
        return bool(self.q or self.kind or self.state)


def day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat() if ms > 0 else ""


def usd(pico: int) -> str:
    """A price for people: as many decimals as it needs, at least two."""
    return dollars(f"{pricing.pico_to_usd(pico):f}")


def dollars(text: str) -> str:
    """``"2.5"`` as ``"$2.50"``, ``"0.075"`` as ``"$0.075"``."""
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.rstrip('0').ljust(2, '0')}"


def _span(values: Iterable[int], show: Callable[[int], str]) -> str:
    """One value, or the lowest and highest when deployments differ."""
    found = sorted(set(values))
    if not found:
        return "—"
    return show(found[0]) if len(found) == 1 else f"{show(found[0])} to {show(found[-1])}"


def _search(*parts: str | Iterable[str]) -> str:
    words = [p if isinstance(p, str) else " ".join(p) for p in parts]
    return " ".join(words).lower()


def _health(stats: Stats, names: Iterable[str]) -> Health | None:
    return stats.combined(names) if stats.known else None


def model_entry(route: ModelRoute, who: Who, src: Sources, subs: list[Subscription]) -> Entry:
    catalog = pricing.load_catalog()
    known = [catalog[d.catalog_model] for d in route.deployments if d.catalog_model in catalog]
    providers = sorted({d.provider for d in route.deployments})
    facts: list[tuple[str, str]] = [("Providers", ", ".join(providers) or "—")]
    if route.aliases:
        facts.append(("Also called", ", ".join(route.aliases)))
    if known:
        facts.append(("Context window", _span((m.context_window for m in known), lambda w: f"{w:,} tokens")))
        prices = [pricing.price_of(m) for m in known]
        per_mtok = lambda p: dollars(pricing.usd_per_mtok(p))  # noqa: E731
        facts.append(("Input", _span((p.input for p in prices), per_mtok) + " per 1M tokens"))
        if any(m.mode == "chat" for m in known):
            facts.append(("Output", _span((p.output for p in prices), per_mtok) + " per 1M tokens"))
        facts.append(("Modalities", modalities(known)))
        caps = sorted({c for m in known for c in m.caps if c not in ("vision", "embeddings")})
        if caps:
            facts.append(("Capabilities", ", ".join(caps)))
    else:
        facts.append(("Prices", "not in the catalog"))
    needs = model_needs_approval(route, src.approval_rules)
    return Entry(
        kind="model",
        name=route.name,
        title=route.name,
        description=f"Served by {len(route.deployments)} deployment(s), {route.strategy} routing.",
        access=access_of(who, subscription_name("model", route.name), needs, subs),
        facts=tuple(facts),
        health=_health(src.stats, [route.name, *route.aliases]),
        health_known=src.stats.known,
        search_text=_search(
            "model", route.name, route.aliases, providers, [d.upstream_model for d in route.deployments]
        ),
    )


def modalities(models: Iterable[pricing.CatalogModel]) -> str:
    out: list[str] = []
    for m in models:
        for what in (["text in", "vectors out"] if m.mode == "embedding" else ["text in", "text out"]) + (
            ["image in"] if "vision" in m.caps else []
        ):
            if what not in out:
                out.append(what)
    return ", ".join(out)


def sample_value(schema: Mapping[str, Any]) -> Any:
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    return 1 if schema.get("type") == "number" else "..."


def prompt_example(slug: str, version: PromptVersion) -> str:
    sample = {
        v.name: v.default if v.default is not None else (v.values[0] if v.values else "...") for v in version.variables
    }
    return f"POST /apis/{slug}  {json.dumps(sample, ensure_ascii=False)}"


def output_summary(schema: Mapping[str, Any] | None) -> str:
    if not schema:
        return "text"
    props = schema.get("properties")
    if isinstance(props, Mapping) and props:
        names = [str(k) for k in list(props)[:LISTED]]
        more = ", …" if len(props) > LISTED else ""
        return f"JSON object: {', '.join(names)}{more}"
    return f"JSON {schema.get('type', 'value')}"


def prompt_entry(
    prompt: Prompt,
    version: PromptVersion,
    output: dict[str, Any] | None,
    who: Who,
    src: Sources,
    subs: list[Subscription],
) -> Entry:
    assert prompt.api is not None
    api = prompt.api
    variables = [
        f"{v.name} ({v.type}{'' if v.required and v.default is None else ', optional'})" for v in version.variables
    ]
    facts: list[tuple[str, str]] = [
        ("Variables", ", ".join(variables[:LISTED]) + (", …" if len(variables) > LISTED else "") or "none"),
        ("Answer", output_summary(output)),
    ]
    if version.steps:
        facts.append(("Chain", " → ".join(s.prompt for s in version.steps)))
    elif version.model:
        facts.append(("Model", version.model))
    facts.append(("Version", f"{version.version} (label {api.label})"))
    return Entry(
        kind="prompt",
        name=api.slug,
        title=api.slug,
        description=version.note,
        state=api.state,
        successor=api.successor,
        sunset_at_ms=api.sunset_at_ms,
        access=access_of(who, subscription_name("prompt", api.slug), api.requires_approval, subs),
        facts=tuple(facts),
        example=prompt_example(api.slug, version),
        health=src.stats.prompt(prompt.name) if src.stats.known else None,
        health_known=src.stats.known,
        search_text=_search("prompt", api.slug, prompt.name, version.note, [v.name for v in version.variables]),
    )


def service_name(service: RestService) -> str:
    """The docs page's name of a service version: its slug (version 1) or ``slug.v<N>``."""
    return service.slug if service.version == 1 else service.key


def service_path(service: RestService) -> str:
    return f"{PATH_PREFIX}{service.slug}/" + (f"v{service.version}/" if service.version != 1 else "")


def service_entry(service: RestService, who: Who, src: Sources, subs: list[Subscription]) -> Entry:
    facts: list[tuple[str, str]] = [
        ("Base path", service_path(service)),
        ("Methods", ", ".join(service.methods)),
        ("Version", str(service.version)),
    ]
    if service.price_pico_usd:
        facts.append(("Price", f"{usd(service.price_pico_usd)} per call"))
    if service.rpm:
        facts.append(("Rate limit", f"{service.rpm:,} requests / minute (all callers)"))
    return Entry(
        kind="service",
        name=service_name(service),
        title=service.title or service.slug,
        description=service.description,
        state=service.state,
        successor=service.successor,
        sunset_at_ms=service.sunset_at_ms,
        access=access_of(who, subscription_name("service", service.slug), service.requires_approval, subs),
        facts=tuple(facts),
        # Its rows name it as their model (``service:<slug>``), so the stats query has it.
        health=_health(src.stats, [service_model(service.slug, service.version)]),
        health_known=src.stats.known,
        search_text=_search("service rest", service.slug, service.title, service.description),
    )


def visible_tools(server: McpServer, catalog: ServerCatalog | None, who: Who, tenant: Tenant | None) -> list[str]:
    """The tools of a server the person's tenant may call (a gateway admin: all)."""
    if catalog is None:
        return []
    if who.is_gateway_admin:
        return sorted(t.name for t in catalog.tools)
    # The tenant's view: its patterns, not any one key's (keys narrow further).
    probe = ApiKey(id="", tenant_id=who.tenant_id, mcp_tools=None)
    return sorted(t.name for t in catalog.tools if mcp_access.may_use(tenant, probe, server.name, t))


def mcp_entry(server: McpServer, tools: list[str], who: Who, src: Sources, subs: list[Subscription]) -> Entry:
    listed = ", ".join(tools[:LISTED]) + (f", … ({len(tools)} in all)" if len(tools) > LISTED else "")
    facts = (("Endpoint", f"/mcp (tools named {tool_name(server.name, '<tool>')})"), ("Tools", listed or "none now"))
    return Entry(
        kind="mcp",
        name=server.name,
        title=server.name,
        description=server.description,
        access=access_of(who, subscription_name("mcp", server.name), server.requires_approval, subs),
        facts=facts,
        tools=tuple(tools),
        health=_health(src.stats, [tool_name(server.name, t) for t in tools]),
        health_known=src.stats.known,
        search_text=_search("mcp tools", server.name, server.description, tools),
    )


def build(src: Sources, who: Who) -> list[Entry]:
    """Every entry the person may see, by kind then name."""
    subs = [s for s in src.subscriptions if who.tenant_id and s.tenant_id == who.tenant_id]
    out = [model_entry(r, who, src, subs) for r in sorted(src.routes, key=lambda r: r.name)]
    out += [
        prompt_entry(p, v, o, who, src, subs) for p, v, o in src.prompts if p.api is not None and p.api.state in STATES
    ]
    out += [
        service_entry(s, who, src, subs)
        for s in sorted(src.services, key=lambda s: (s.slug, s.version))
        if s.state in STATES
    ]
    tenant = src.tenants.get(who.tenant_id)
    for name in sorted(src.mcp_servers):
        server = src.mcp_servers[name]
        tools = visible_tools(server, src.mcp_catalogs.get(name), who, tenant)
        if tools or who.is_gateway_admin:
            out.append(mcp_entry(server, tools, who, src, subs))
    return out
