"""Routing for a REST call: a service's instances -> the ones to try, in order.

Each instance of a service version is a deployment of its own
(``rest:<slug>.v<N>:<i>``) so the health board keeps a breaker per
instance, as for models; the provider stage's health checks (an
instance's ``health_path``) report to the same board. The order is a
weighted draw among the instances whose breaker lets calls through, then
those it holds back (as a "weighted" model group orders its deployments).

Routing sets no retry rounds: whether a failed try may go on to the next
instance is the adapter's to say, as only it knows whether the request's
body reached the instance (a POST that did is never sent again; an
idempotent method, or any method that never got through, may be).
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from schemas.envelope import Deployment
from schemas.errors import InvalidRequest, RecordNotFound
from schemas.rest import RestCall, RestService, service_key, service_model
from services import strategies
from services.health import HealthBoard
from services.rest_policy import find_service
from services.routing import Plan

PROVIDER = "rest"


def deployment_name(service: RestService, index: int) -> str:
    return f"{PROVIDER}:{service_key(service.slug, service.version)}:{index}"


def deployments(service: RestService) -> list[Deployment]:
    """Every instance of ``service`` as a deployment: its base URL, weight
    and the service's read timeout (the longest silence of one try)."""
    return [
        Deployment(
            name=deployment_name(service, i),
            provider=PROVIDER,
            base_url=instance.url,
            upstream_model=service_key(service.slug, service.version),
            timeout_s=service.read_timeout_s,
            weight=instance.weight,
        )
        for i, instance in enumerate(service.instances)
    ]


def plan(
    services: Mapping[str, RestService],
    call: RestCall,
    board: HealthBoard,
    now: float,
    rng: random.Random,
    pin: str = "",
) -> Plan:
    """The instances to try for ``call``, the first drawn by weight among
    the healthy ones, so the calls of many callers spread over them."""
    # Policy found it; a record changed since is seen here the same way.
    service = find_service(call, services)
    options = deployments(service)
    group = service_model(service.slug, service.version)
    if not options:
        raise RecordNotFound(f"Service {group!r} has no instance to call.", code="service_not_found")
    if pin:
        pinned = next((d for d in options if d.name == pin), None)
        if pinned is None:
            raise InvalidRequest(
                f"Deployment {pin[:100]!r} is no instance of service {group!r}.", code="unknown_deployment"
            )
        return Plan(group, [pinned])
    ranked = strategies.ranked("weighted", board.options(options, now, "weighted"), rng)
    candidates = [options[o.index] for o in ranked]
    board.chose(candidates[0].name, now)
    return Plan(group, candidates, retries=0)
