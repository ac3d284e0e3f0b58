"""A whole embedded gateway for tests: real nats-server, every stage as a
process, embedded ClickHouse, the mock upstream; all on free loopback ports."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import nats
import nats.aio.client
import nats.errors

from schemas.control import ApiKey
from services.bus import process
from services.cli.layout import Layout
from services.cli.named_query import query
from services.cli.nats_server import free_port
from services.cli.supervisor import Supervisor

DEMO_KEY = "sk-test-demo-0123456789"
LIMITED_KEY = "sk-test-limited-0123456789"
REDACT_KEY = "sk-test-redact-0123456789"
ADMIN_KEY = "sk-test-admin-0123456789"
PRIVATE_KEY = "sk-test-private-0123456789"

CONFIG = """
[gateway]
request_timeout_s = {timeout}
stream_idle_timeout_s = {timeout}
max_body_bytes = {max_body_bytes}
body_timeout_s = 2
{gateway}

[[tenants]]
id = "demo"
cache = {{ max_age_s = 600 }}
mcp_tools = ["demo-tools__*"]

[[tenants]]
id = "careful"
redaction_rules = [{{ name = "email", pattern = "[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\\\.[A-Za-z]{{2,}}" }}]
call_log_max_bytes = 400
privacy = {{ output = {{ secret = "redact" }} }}
mcp_tools = ["demo-tools__*"]

[[tenants]]
id = "private"
mcp_tools = ["demo-tools__*"]
[tenants.privacy]
custom = [{{ name = "codename", keywords = ["bluebird"], action = "block" }}]
injection = {{ action = "block", threshold = 0.6 }}
[tenants.privacy.detectors]
email = "mask"
phone = "mask"
card = "mask"
iban = "mask"
ssn = "mask"
ipv4 = "mask"
ipv6 = "mask"
secret = "mask"

# The mock's MCP server, as the demo config registers it (callers: "demo-tools__echo").
[[mcp_servers]]
name = "demo-tools"
transport = "http"
urls = ["http://127.0.0.1:{mock}/mcp"]
timeout_s = 30

[mcp_servers.tools.echo]
price_pico_usd = 1000000

[[models]]
name = "demo-model"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "gpt-3.5-turbo"
catalog_model = "gpt-3.5-turbo"
timeout_s = 30

[[models]]
name = "other-model"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "gpt-4"
catalog_model = "gpt-4"

[[models]]
name = "short-timeout-model"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "gpt-3.5-turbo"
catalog_model = "gpt-3.5-turbo"
timeout_s = 0.5

[[models]]
name = "claude-model"
provider = "anthropic"
base_url = "http://127.0.0.1:{mock}"
upstream_model = "claude-sonnet-4-20250514"

[[models]]
name = "gemini-model"
provider = "gemini"
base_url = "http://127.0.0.1:{mock}"
upstream_model = "gemini-2.5-flash"

[[models]]
name = "embed-model"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "text-embedding-3-small"

[[models]]
name = "gemini-embed"
provider = "gemini"
base_url = "http://127.0.0.1:{mock}"
upstream_model = "gemini-embedding-001"

[[models]]
name = "local/llama3.1:8b"
provider = "ollama"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "llama3.1:8b"

[[models]]
name = "dead-model"
provider = "openai"
base_url = "http://127.0.0.1:{dead}/v1"
upstream_model = "not-in-the-catalog"
"""

# Images, audio, moderation and rerank as the demo config serves them
# (services/cli/demo.toml): pass as a Stack's ``extra_config`` (apart from
# CONFIG so the model lists other tests assert stay as they are).
TASK_MODELS = """[[models]]
name = "demo-image"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "gpt-image-1"

[[models]]
name = "demo-image-imagen"
provider = "gemini"
base_url = "http://127.0.0.1:{mock}"
upstream_model = "imagen-4.0-generate-001"

[[models]]
name = "demo-transcribe"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "whisper-1"

[[models]]
name = "demo-speech"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "tts-1"

[[models]]
name = "demo-moderation"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "omni-moderation-latest"

[[models]]
name = "demo-rerank"
provider = "cohere"
base_url = "http://127.0.0.1:{mock}"
upstream_model = "rerank-v3.5"

[[models]]
name = "demo-rerank-jina"
provider = "openai_compatible"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "jina-reranker-v2-base-multilingual"
"""


def mock_deployment(name: str, **fields: object) -> str:
    """TOML for one deployment of a model group served by the mock as its
    upstream ``name`` (paths under "/@name/"), which a test can make misbehave."""
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items())
    return f"""
[[models.deployments]]
name = "{name}"
provider = "openai"
base_url = "http://127.0.0.1:{{mock}}/@{name}/v1"
upstream_model = "gpt-4o-mini"
api_key_env = ""
{extra}"""


class Stack:
    def __init__(
        self,
        home: Path,
        timeout_s: float = 3.0,
        extra_config: str = "",
        gateway: str = "",
        max_body_bytes: int = 65536,
        **layout: object,
    ) -> None:
        """``extra_config``: more TOML, formatted like CONFIG ({mock} is the
        mock upstream's port); ``gateway``: more settings of its [gateway]
        table; ``max_body_bytes``: the largest request body (small, so tests
        of the limit send little; an agent client's requests need more);
        ``layout``: Layout fields such as replicas."""
        self.home = home
        self.mock_port = free_port()
        config = home / "sluice.toml"
        home.mkdir(parents=True, exist_ok=True)
        text = (CONFIG + extra_config).format(
            timeout=timeout_s, mock=self.mock_port, dead=free_port(), gateway=gateway, max_body_bytes=max_body_bytes
        )
        config.write_text(text)
        if layout.get("cluster", 1) > 1:  # type: ignore[operator]
            nodes = int(layout["cluster"])  # type: ignore[call-overload]
            layout.setdefault("extra_nats_ports", [free_port() for _ in range(nodes - 1)])
            layout.setdefault("route_ports", [free_port() for _ in range(nodes)])
        self.layout = Layout(
            home=home,
            config=config,
            nats_port=free_port(),
            http_port=free_port(),
            mock_port=self.mock_port,
            **layout,  # type: ignore[arg-type]
        )
        self.supervisor = Supervisor(
            self.layout,
            extra_keys={
                DEMO_KEY: ApiKey(id="demo", tenant_id="demo"),
                LIMITED_KEY: ApiKey(id="limited", tenant_id="demo", models=["demo-*"]),
                REDACT_KEY: ApiKey(id="careful", tenant_id="careful"),
                ADMIN_KEY: ApiKey(id="admin", tenant_id="", role="gateway_admin"),
                PRIVATE_KEY: ApiKey(id="private", tenant_id="private"),
            },
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.layout.http_port}/v1"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.layout.http_port}/admin/v1"

    @property
    def mock_url(self) -> str:
        return f"http://127.0.0.1:{self.mock_port}"

    @property
    def nats_url(self) -> str:
        return self.layout.nats_url

    def start(self) -> Stack:
        self.supervisor.start()
        return self

    def stop(self) -> None:
        self.supervisor.stop()

    def mock_stats(self) -> dict:
        return httpx.get(f"{self.mock_url}/mock/stats").json()

    def wait_upstream_cancelled(self, before: int, timeout: float = 10.0) -> None:
        """Wait until the mock saw a stream cancelled beyond the ``before``
        it had (``mock_stats()["cancelled_streams"]``); fail if it never does."""
        deadline = time.monotonic() + timeout
        while self.mock_stats()["cancelled_streams"] == before:
            assert time.monotonic() < deadline, "the upstream stream kept running: it was never cancelled"
            time.sleep(0.05)

    def creds(self, user: str = "admin") -> str:
        """The credentials file of a NATS user: a role, or "svc-demo" (an internal service)."""
        return str(self.supervisor.creds_path(user))

    async def connect(self, user: str = "svc-demo", **options: object) -> nats.aio.client.Client:
        return await nats.connect(process.servers(self.nats_url), **process.auth_options(self.creds(user)), **options)

    def query(self, name: str, **params: object) -> dict:
        return asyncio.run(query(name, params, self.nats_url, creds=self.creds()))

    def rows_of(self, request_ids: Iterable[str], since_ns: int = 0, timeout: float = 30.0) -> dict[str, dict]:
        """The ``requests`` rows of these requests (received since ``since_ns``)
        by id, once the sink has written every one: one query per look,
        rather than one per request."""
        wanted = set(request_ids)
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = self.query("request_rows", since_ns=since_ns, limit=1_000_000)
            except nats.errors.NoRespondersError:  # the sink is (re)starting
                result = {"error": None, "rows": [], "columns": []}
            assert result["error"] is None, result["error"]
            rows = {row[0]: dict(zip(result["columns"], row, strict=True)) for row in result["rows"]}
            if wanted <= rows.keys():
                return {request_id: rows[request_id] for request_id in wanted}
            if time.monotonic() > deadline:
                raise AssertionError(f"no requests rows for {sorted(wanted - rows.keys())[:5]} after {timeout}s")
            time.sleep(0.2)

    def request_row(self, request_id: str, timeout: float = 30.0) -> dict:
        """The ``requests`` row of one request, once the sink has written it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = self.query("request", request_id=request_id)
            except nats.errors.NoRespondersError:  # the sink is (re)starting
                result = {"error": None, "rows": []}
            assert result["error"] is None, result["error"]
            if result["rows"]:
                return dict(zip(result["columns"], result["rows"][0], strict=True))
            if time.monotonic() > deadline:
                raise AssertionError(f"no requests row for {request_id} after {timeout}s")
            time.sleep(0.1)
