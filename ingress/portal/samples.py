"""Code samples for an API's docs page: curl, the ``openai`` SDK (model
groups and prompt APIs) and Python's httpx, against the gateway's base URL.

Every name in them came from a record or a service's document, so each is
quoted for the language it lands in (``shlex.quote`` for the shell,
``repr``/JSON for Python); the page escapes the whole sample as text.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

# What a Host header may hold to be used in a sample; anything else is
# replaced (it is the asker's own header, but a sample is copied and run).
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](?::[0-9]{1,5})?")
DEFAULT_BASE = "http://127.0.0.1:8080"
KEY_ENV = "SLUICE_KEY"


@dataclass(frozen=True, slots=True)
class Sample:
    id: str
    label: str
    code: str


def base_url(scheme: str, host: str | None) -> str:
    if not host or not _HOST.fullmatch(host) or scheme not in ("http", "https"):
        return DEFAULT_BASE
    return f"{scheme}://{host}"


def _json(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _py(value: Any) -> str:
    """A JSON value as Python source (``true`` -> ``True``)."""
    return repr(value)


def _curl(method: str, url: str, body: Any | None) -> str:
    lines = [f"curl {shlex.quote(url)}"] if method == "GET" else [f"curl -X {method} {shlex.quote(url)}"]
    lines.append(f'  -H "Authorization: Bearer ${KEY_ENV}"')
    if body is not None:
        lines.append("  -H 'Content-Type: application/json'")
        lines.append(f"  -d {shlex.quote(_json(body))}")
    return " \\\n".join(lines)


def _httpx(method: str, url: str, body: Any | None) -> str:
    lines = [
        "import os",
        "",
        "import httpx",
        "",
        "answer = httpx.request(",
        f"    {method!r},",
        f"    {url!r},",
        f"""    headers={{'Authorization': f"Bearer {{os.environ[{KEY_ENV!r}]}}"}},""",
    ]
    if body is not None:
        lines.append(f"    json={_py(body)},")
    lines += ["    timeout=60,", ")", "print(answer.status_code, answer.text)"]
    return "\n".join(lines)


def chat_body(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Say hello in five words."}]}


def embeddings_body(model: str) -> dict[str, Any]:
    return {"model": model, "input": "The quick brown fox"}


def model_samples(base: str, model: str, embeddings: bool) -> list[Sample]:
    path, body = (
        ("/v1/embeddings", embeddings_body(model)) if embeddings else ("/v1/chat/completions", chat_body(model))
    )
    lines = [
        "import os",
        "",
        "from openai import OpenAI",
        "",
        f"client = OpenAI(base_url={base + '/v1'!r}, api_key=os.environ[{KEY_ENV!r}])",
    ]
    if embeddings:
        lines += [
            f"vectors = client.embeddings.create(model={model!r}, input={body['input']!r})",
            "print(len(vectors.data[0].embedding))",
        ]
    else:
        lines += [
            "answer = client.chat.completions.create(",
            f"    model={model!r},",
            f"    messages={_py(body['messages'])},",
            ")",
            "print(answer.choices[0].message.content)",
        ]
    sdk = "\n".join(lines)
    return [
        Sample("curl", "curl", _curl("POST", base + path, body)),
        Sample("openai", "Python (openai)", sdk),
        Sample("httpx", "Python (httpx)", _httpx("POST", base + path, body)),
    ]


def prompt_samples(base: str, slug: str, variables: dict[str, Any]) -> list[Sample]:
    path = f"/apis/{slug}"
    sdk = (
        "import os\n\nfrom openai import OpenAI\n\n"
        f"client = OpenAI(base_url={base!r}, api_key=os.environ[{KEY_ENV!r}])\n"
        "# A prompt API is plain JSON over POST: the SDK's generic call sends it with your key.\n"
        f"answer = client.post({path!r}, body={_py(variables)}, cast_to=object)\n"
        "print(answer['output'], answer['cost']['usd'])"
    )
    return [
        Sample("curl", "curl", _curl("POST", base + path, variables)),
        Sample("openai", "Python (openai)", sdk),
        Sample("httpx", "Python (httpx)", _httpx("POST", base + path, variables)),
    ]


def service_samples(base: str, method: str, path: str, body: Any | None) -> list[Sample]:
    return [
        Sample("curl", "curl", _curl(method, base + path, body)),
        Sample("httpx", "Python (httpx)", _httpx(method, base + path, body)),
    ]


def mcp_samples(base: str, tool: str) -> list[Sample]:
    config = {
        "mcpServers": {
            "sluice": {"type": "http", "url": f"{base}/mcp", "headers": {"Authorization": "Bearer <your key>"}}
        }
    }
    sdk = (
        "import asyncio\nimport os\n\n"
        "from mcp import ClientSession\nfrom mcp.client.streamable_http import streamablehttp_client\n\n\n"
        "async def main() -> None:\n"
        f"""    headers = {{'Authorization': f"Bearer {{os.environ[{KEY_ENV!r}]}}"}}\n"""
        f"    async with streamablehttp_client({base + '/mcp'!r}, headers=headers) as (read, write, _):\n"
        "        async with ClientSession(read, write) as session:\n"
        "            await session.initialize()\n"
        "            print(await session.list_tools())\n"
        + (f"            print(await session.call_tool({tool!r}, {{}}))\n" if tool else "")
        + "\n\nasyncio.run(main())"
    )
    return [
        Sample("config", "Client configuration", _json(config, indent=2)),
        Sample("mcp", "Python (mcp)", sdk),
    ]


def fill_path(path: str) -> str:
    """An OpenAPI path template with a sample for each parameter (``/items/{id}`` -> ``/items/1``)."""
    return re.sub(r"\{[^{}/]*\}", "1", path)
