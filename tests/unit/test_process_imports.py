"""Each process imports what it uses (issue 30): what only some requests
need is loaded by the first of them. Each check runs in a fresh interpreter,
as this test process holds all of it already."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]

LOADED = """
import sys

def loaded(*names):
    return sorted(m for m in sys.modules if m.split(".")[0] in names)
"""
# Loaded only where used: token counting, /metrics and the counts behind it,
# prompt output schemas, tenants' own detector patterns, the admin API, the
# dashboard and the portal (Litestar).
LAZY = ("tiktoken", "prometheus_client", "jsonschema_rs", "re2", "litestar")


def run(body: str) -> None:
    script = LOADED + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "modules",
    ["workers.pipeline, workers.policy, workers.routing, workers.provider", "workers.redaction", "workers.cache"],
)
def test_a_stage_process_imports_none_of_what_it_may_never_use(modules: str) -> None:
    run(f"""
    import {modules}
    assert not loaded{LAZY!r}, loaded{LAZY!r}
    """)


def test_the_cache_stage_imports_no_detector() -> None:
    run("""
    import workers.cache
    assert not loaded("phonenumbers") and "services.privacy" not in sys.modules, loaded("phonenumbers", "services")
    """)


def test_the_ingress_imports_no_litestar_until_a_request_for_its_apps() -> None:
    run(f"""
    import ingress.__main__
    from ingress import app
    assert not loaded{LAZY!r}, loaded{LAZY!r}

    from ingress.admin.app import PREFIX as ADMIN
    from ingress.dashboard.app import PREFIX as DASHBOARD
    from ingress.portal.views import PREFIX as PORTAL
    assert ADMIN.startswith(app.ADMIN_PATH) and app.DASHBOARD_PATH == DASHBOARD and app.PORTAL_PATH == PORTAL
    """)


def test_the_ingress_makes_each_app_with_its_first_request_and_once() -> None:
    run("""
    import asyncio
    from types import SimpleNamespace
    from ingress import app
    from services.config import GatewaySettings

    async def send(message):
        raise AssertionError(message)

    async def main():
        ingress = app.IngressApp(GatewaySettings())
        ingress.gw = SimpleNamespace(store=None)
        for path, name in (("/admin/v1/keys", "admin"), ("/dashboard", "dashboard"), ("/portal/apps", "portal")):
            assert app._sub_app_of(path) == name and getattr(ingress, name) is None
            first, second = await asyncio.gather(ingress._sub_app(name, send), ingress._sub_app(name, send))
            assert first is second is getattr(ingress, name) and type(first).__name__ == "Litestar"
        assert not app._sub_app_of("/v1/chat/completions") and not app._sub_app_of("/portals")

    asyncio.run(main())
    """)


def test_metrics_load_prometheus_client_with_the_first_sample() -> None:
    run("""
    from schemas.events import RequestEvent
    from services.bus import metrics

    metrics.flush()  # nothing seen: nothing to write
    assert not loaded("prometheus_client"), loaded("prometheus_client")
    before = metrics.REQUESTS.labels("chat", "200")._value.get()
    row = RequestEvent(event_id="e", request_id="r", received_at_ns=0, origin="http", api="chat", model="m", status=200)
    metrics.request_ended(row)
    metrics.flush()
    assert metrics.REQUESTS.labels("chat", "200")._value.get() == before + 1
    assert b"sluice_requests_total" in metrics.exposition()
    """)


def test_an_app_that_cannot_be_made_is_a_logged_500_and_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from ingress import app
    from services.config import GatewaySettings

    tries: list[str] = []

    def broken(gw: object) -> object:
        tries.append("made")
        raise RuntimeError("plotly-basic.min.js.gz is missing")

    monkeypatch.setitem(app._SUB_APPS, "dashboard", broken)
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def twice() -> list[object]:
        ingress = app.IngressApp(GatewaySettings())
        ingress.gw = SimpleNamespace(store=None)  # type: ignore[assignment]
        return [await ingress._sub_app("dashboard", send), await ingress._sub_app("dashboard", send)]

    assert asyncio.run(twice()) == [None, None] and len(tries) == 2
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [500, 500]
