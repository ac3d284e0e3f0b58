"""Routing: a public model name to the deployment that serves it."""

from __future__ import annotations

from collections.abc import Mapping

from schemas.control import ModelRoute
from schemas.envelope import Deployment
from schemas.errors import InvalidRequest, ModelNotFound
from services import pricing


def resolve(routes: Mapping[str, ModelRoute], model: str, api: str = "chat") -> Deployment:
    route = routes.get(model)
    if route is None:
        raise ModelNotFound(f"The model {model!r} does not exist or is not configured.")
    check_mode(route.deployment, model, api)
    return route.deployment


def check_mode(dep: Deployment, model: str, api: str) -> None:
    """An embeddings model does not chat and a chat model does not embed: the
    upstream would refuse it, or worse, answer something meaningless. The
    catalog knows each model's mode; a model it lacks is given the benefit of the doubt."""
    entry = pricing.load_catalog().get(dep.catalog_model or "")
    if entry is None:
        return
    wants = "embedding" if api == "embeddings" else "chat"
    if entry.mode != wants:
        endpoint = "/v1/embeddings" if entry.mode == "embedding" else "/v1/chat/completions or /v1/messages"
        raise InvalidRequest(
            f"The model {model!r} is {'an embeddings' if entry.mode == 'embedding' else 'a chat'} model; "
            f"call it on {endpoint}.",
            code="model_mode_mismatch",
        )
