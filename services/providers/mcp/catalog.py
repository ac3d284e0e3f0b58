"""A server's listing (the SDK's tools, prompts and resources) as the
gateway's ``ServerCatalog``, and whether two catalogs say the same."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
import msgspec

from schemas.mcp import (
    CatalogPrompt,
    CatalogResource,
    CatalogTool,
    PromptArgument,
    ServerCatalog,
    ToolAnnotations,
    kv_encode,
)

_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class Listing:
    """What one instance listed."""

    tools: list[types.Tool] = field(default_factory=list)
    prompts: list[types.Prompt] = field(default_factory=list)
    resources: list[types.Resource] = field(default_factory=list)


def _schema(schema: dict[str, Any] | None) -> bytes:
    return _encode(schema) if schema is not None else b""


def annotations(hints: types.ToolAnnotations | None) -> ToolAnnotations | None:
    if hints is None:
        return None
    return ToolAnnotations(
        title=hints.title,
        readOnlyHint=hints.read_only_hint,
        destructiveHint=hints.destructive_hint,
        idempotentHint=hints.idempotent_hint,
        openWorldHint=hints.open_world_hint,
    )


def tool(t: types.Tool) -> CatalogTool:
    return CatalogTool(
        name=t.name,
        description=t.description or "",
        title=t.title or "",
        input_schema=_schema(t.input_schema) or b'{"type":"object"}',
        output_schema=_schema(t.output_schema),
        annotations=annotations(t.annotations),
    )


def prompt(p: types.Prompt) -> CatalogPrompt:
    return CatalogPrompt(
        name=p.name,
        description=p.description or "",
        title=p.title or "",
        arguments=[
            PromptArgument(name=a.name, description=a.description or "", required=bool(a.required))
            for a in p.arguments or ()
        ],
    )


def resource(r: types.Resource) -> CatalogResource:
    return CatalogResource(
        uri=str(r.uri),
        name=r.name,
        description=r.description or "",
        title=r.title or "",
        mime_type=r.mime_type or "",
    )


def server_catalog(server: str, listing: Listing, healthy: list[str], error: str, now_ms: int) -> ServerCatalog:
    return ServerCatalog(
        server=server,
        tools=[tool(t) for t in listing.tools],
        prompts=[prompt(p) for p in listing.prompts],
        resources=[resource(r) for r in listing.resources],
        refreshed_at_ms=now_ms,
        healthy=healthy,
        error=error,
    )


def content(c: ServerCatalog) -> bytes:
    """A catalog's bytes but for when it was made: two listings that found
    the same have the same content."""
    return kv_encode(msgspec.structs.replace(c, refreshed_at_ms=0))


def same(a: ServerCatalog | None, b: ServerCatalog | None) -> bool:
    if a is None or b is None:
        return a is b
    return content(a) == content(b)
