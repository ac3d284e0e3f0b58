"""A named analytics query over NATS, as every CLI command and benchmark asks it."""

from __future__ import annotations

import json

import msgspec

from schemas import subjects
from services.bus import process


async def query(name: str, params: dict, nats_url: str, timeout: float = 10.0, creds: str | None = None) -> dict:
    nc = await process.connect_tool(nats_url, creds)
    try:
        msg = await nc.request(
            subjects.ANALYTICS_QUERY, msgspec.json.encode({"name": name, "params": params}), timeout=timeout
        )
    finally:
        await nc.close()
    return json.loads(msg.data)
