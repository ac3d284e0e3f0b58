"""Azure OpenAI: OpenAI's bodies, but the deployment is in the URL, the API
version is a query parameter, and the key goes in an ``api-key`` header.

``base_url`` is the resource endpoint (``https://NAME.openai.azure.com``) and
``upstream_model`` the Azure deployment name.
"""

from __future__ import annotations

from schemas.envelope import Deployment
from services.providers.openai.chat import JSON, OpenAIChat

DEFAULT_API_VERSION = "2024-10-21"


class AzureOpenAIChat(OpenAIChat):
    def url(self, deployment: Deployment, path: str) -> str:
        version = deployment.api_version or DEFAULT_API_VERSION
        return f"{deployment.base_url}/openai/deployments/{deployment.upstream_model}{path}?api-version={version}"

    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"content-type": JSON}
        if api_key:
            headers["api-key"] = api_key
        return headers
