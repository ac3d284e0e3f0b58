"""A stage that never answers: the ingress answers 504 at the deadline."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from schemas.control import ApiKey
from services import config
from services.bus import process
from services.cli import bootstrap, nats_server

KEY = "sk-test-lonely-ingress"


@pytest.fixture
def lonely_ingress(tmp_path: Path) -> Iterator[str]:
    """nats-server and the ingress, and no stage at all behind them."""
    port, http_port = nats_server.free_port(), nats_server.free_port()
    nats = nats_server.start(tmp_path / "nats", port)
    cfg = tmp_path / "sluice.toml"
    cfg.write_text('[gateway]\nrequest_timeout_s = 1.0\n[[tenants]]\nid = "t"\n')
    records = config.control_records(config.load(cfg), {KEY: ApiKey(id="k", tenant_id="t")})

    async def seed() -> None:
        nc = await process.connect("test", f"nats://127.0.0.1:{port}")
        await bootstrap.prepare(nc, records)
        await nc.close()

    asyncio.run(seed())
    env = dict(os.environ, SLUICE_NATS_URL=f"nats://127.0.0.1:{port}", SLUICE_CONFIG=str(cfg))
    ingress = subprocess.Popen([sys.executable, "-m", "ingress", "--port", str(http_port)], env=env)
    try:
        nats_server.wait_for_port(http_port, 30, ingress)
        yield f"http://127.0.0.1:{http_port}/v1"
    finally:
        ingress.terminate()
        ingress.wait(10)
        nats.terminate()
        nats.wait(10)


def test_no_stage_answering_is_504_at_the_deadline(lonely_ingress: str) -> None:
    started = time.monotonic()
    resp = httpx.post(
        f"{lonely_ingress}/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "anyone?"}]},
        headers={"authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert resp.status_code == 504
    assert resp.json()["error"]["code"] == "gateway_timeout"
    assert 1.0 <= elapsed < 10  # answered at the deadline, not left hanging
    assert httpx.get(f"{lonely_ingress.removesuffix('/v1')}/healthz").json()["nats"] is True
