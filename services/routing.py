"""Routing: a public model name to the deployment that serves it."""

from __future__ import annotations

from collections.abc import Mapping

from schemas.control import ModelRoute
from schemas.envelope import Deployment
from schemas.errors import ModelNotFound


def resolve(routes: Mapping[str, ModelRoute], model: str) -> Deployment:
    route = routes.get(model)
    if route is None:
        raise ModelNotFound(f"The model {model!r} does not exist or is not configured.")
    return route.deployment
