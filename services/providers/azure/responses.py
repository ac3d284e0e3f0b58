"""Azure OpenAI's Responses API: OpenAI's bodies and events (read by
``services.providers.openai.responses``), on Azure's v1 route, which takes
the deployment in the body's ``model`` (``upstream_model``, as the
pass-through writes it) rather than in the URL, and no ``api-version``."""

from __future__ import annotations

from schemas.envelope import Deployment
from services.providers.openai.responses import JSON


def endpoint(deployment: Deployment, api_key: str | None) -> tuple[str, dict[str, str]]:
    headers = {"content-type": JSON}
    if api_key:
        headers["api-key"] = api_key
    return f"{deployment.base_url}/openai/v1/responses", headers
