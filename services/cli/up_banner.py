"""What `sluice up` prints once everything serves: where each door is, the
demo keys, and one call to try at each kind of API the demo config has."""

from __future__ import annotations

from pathlib import Path

from services.cli import mcp_cli
from services.cli.layout import Layout
from services.config import Config

DEMO_BODY = '{"model": "demo-model", "messages": [{"role": "user", "content": "Hi"}]}'


def text(config: Config, layout: Layout, home: Path, key: str, pids: dict[str, int]) -> str:
    port = layout.http_port
    demo = any(t.id == "demo" for t in config.tenants)
    private = any(t.id == "demo-private" for t in config.tenants)
    demo_line = f"{key}   (also in {home / 'demo-key'})" if demo else "(none: the config has no tenant 'demo')"
    private_line = (
        f"  masking demo key       in {home / 'demo-private-key'} (its tenant, demo-private, masks PII)\n"
        if private
        else ""
    )
    mcp_line = mcp_cli.demo_line(port, key) if demo and any(m.name == "demo-tools" for m in config.mcp_servers) else ""
    rest_line = (
        f"A REST service through the same pipeline:  curl http://127.0.0.1:{port}/services/demo-echo/items/42 "
        f"-H 'Authorization: Bearer {key}'\n"
        if demo and any(svc.slug == "demo-echo" for svc in config.services)
        else ""
    )
    return (
        f"\nSluice is up.\n"
        f"  OpenAI-compatible API  http://127.0.0.1:{port}/v1\n"
        f"  demo API key           {demo_line}\n"
        f"{private_line}"
        f"  gateway admin key      in {home / 'admin-key'} (manages keys, tenants, limits: sluice keys --help)\n"
        f"  developer portal       http://127.0.0.1:{port}/portal "
        f"(invite people: sluice users invite EMAIL --tenant demo --role developer)\n"
        f"  NATS                   {layout.nats_url}\n"
        f"  ClickHouse             {layout.dsn}\n"
        f"  logs                   {home / 'logs'}\n"
        f"  processes              {', '.join(f'{n}={p}' for n, p in pids.items())}\n\n"
        f"Try:  curl http://127.0.0.1:{port}/v1/chat/completions -H 'Authorization: Bearer {key}' "
        f"-H 'Content-Type: application/json' -d '{DEMO_BODY}'\n"
        f"{mcp_line}"
        f"{rest_line}"
        f"Ctrl-C stops everything."
    )
