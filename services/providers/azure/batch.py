"""Azure OpenAI's Batch API (global batch deployments): OpenAI's shapes
(``services.providers.openai.batch``) under the resource's ``/openai/files``
and ``/openai/batches`` with ``?api-version=``, the ``api-key`` header, and
lines whose ``url`` is the path under the deployment ("/chat/completions")
and whose body's ``model`` is the deployment's name, as Azure's batch guide
writes them.
"""

from __future__ import annotations

from urllib.parse import urlencode

from schemas.envelope import Deployment
from services.providers.azure.chat import DEFAULT_API_VERSION
from services.providers.openai.batch import OpenAIBatches


class AzureBatches(OpenAIBatches):
    paths: dict[str, str] = {"chat": "/chat/completions", "embeddings": "/embeddings"}

    def url(self, dep: Deployment, path: str, query: dict[str, str] | None = None) -> str:
        version = dep.api_version or DEFAULT_API_VERSION
        return f"{dep.base_url}/openai{path}?{urlencode({'api-version': version, **(query or {})})}"
