"""Routing: a requested model name -> its group -> the deployments to try, in order."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec

from schemas.chat import ChatBody, EmbeddingsBody
from schemas.control import ModelRoute
from schemas.envelope import Deployment, ModerationCheck
from schemas.errors import GatewayError, InvalidRequest, ModelNotFound
from schemas.tasks import ImageRequest, ModerationRequest, NativeBatchRequest, TaskRequest
from services import native_batch, pricing, quota, strategies, task_usage, usage
from services.health import HealthBoard
from services.pricing import Mode


class RouteTable:
    """Model groups by name, and the aliases that point at them; kept current
    by the models bucket's watch (``changed`` is its on_change hook)."""

    def __init__(self) -> None:
        self.groups: dict[str, ModelRoute] = {}
        self.aliases: dict[str, str] = {}
        # Every deployment some group names: health is kept for these only.
        self.deployments: set[str] = set()

    def changed(self, name: str, old: ModelRoute | None, new: ModelRoute | None) -> None:
        for alias in old.aliases if old is not None else ():
            if self.aliases.get(alias) == name:
                del self.aliases[alias]
        if new is None:
            self.groups.pop(name, None)
        else:
            self.groups[name] = new
            for alias in new.aliases:
                self.aliases[alias] = name
        self.deployments = {d.name for g in self.groups.values() for d in g.deployments}

    def find(self, model: str) -> ModelRoute | None:
        """A group's own name wins over another group's alias."""
        route = self.groups.get(model)
        if route is None and (target := self.aliases.get(model)) is not None:
            route = self.groups.get(target)
        return route

    def names(self) -> dict[str, ModelRoute]:
        """Every public name (groups and aliases) and the group it calls."""
        out = {alias: self.groups[g] for alias, g in self.aliases.items() if g in self.groups}
        out.update(self.groups)
        return out


def resolve(routes: RouteTable, model: str, api: str = "chat") -> ModelRoute:
    route = routes.find(model)
    if route is None or not route.deployments:
        raise ModelNotFound(f"The model {model!r} does not exist or is not configured.")
    if api != "native_batch":  # its lines were checked against their endpoint when the batch was made
        check_mode(route.deployments[0], model, api)
    return route


# Each client API and the catalog mode of the models it calls.
API_MODES: dict[str, Mode] = {
    "chat": "chat",
    "messages": "chat",
    "responses": "chat",
    "count_tokens": "chat",
    "embeddings": "embedding",
    "images": "image",
    "image_edits": "image",
    "transcriptions": "audio_transcription",
    "translations": "audio_transcription",
    "speech": "speech",
    "moderations": "moderation",
    "rerank": "rerank",
}
# What a model of each mode is, and where to call it (the 400 names both).
MODE_ENDPOINTS: dict[Mode, tuple[str, str]] = {
    "chat": ("a chat", "/v1/chat/completions, /v1/messages or /v1/responses"),
    "embedding": ("an embeddings", "/v1/embeddings"),
    "image": ("an image", "/v1/images/generations or /v1/images/edits"),
    "audio_transcription": ("a transcription", "/v1/audio/transcriptions or /v1/audio/translations"),
    "speech": ("a speech", "/v1/audio/speech"),
    "moderation": ("a moderation", "/v1/moderations"),
    "rerank": ("a rerank", "/v1/rerank"),
}


def check_mode(dep: Deployment, model: str, api: str) -> None:
    """A model is called on the endpoint of its mode: an embeddings model
    does not chat, a chat model makes no images; the upstream would refuse
    the request, or worse, answer something meaningless. The catalog knows
    each model's mode; a model it lacks is given the benefit of the doubt."""
    entry = pricing.load_catalog().get(dep.catalog_model or "")
    if entry is None or API_MODES.get(api, "chat") == entry.mode:
        return
    kind, endpoint = MODE_ENDPOINTS[entry.mode]
    raise InvalidRequest(f"The model {model!r} is {kind} model; call it on {endpoint}.", code="model_mode_mismatch")


def priciest_catalog_model(route: ModelRoute, task: TaskRequest | None = None) -> str | None:
    """The catalog entry a limit or budget should reserve for: the request
    may end up on any of the group's deployments. A task (an image, audio,
    moderation or rerank request) by what it may cost at each, for its
    prices are per unit."""
    best, best_price = None, -1
    for dep in route.deployments:
        if task is not None:
            total = task_usage.worst_case(task, dep.catalog_model)[1]
        else:
            price = pricing.price_for(dep.catalog_model or "")
            total = price.input + price.output if price is not None else 0
        if total > best_price:
            best, best_price = dep.catalog_model, total
    return best


@dataclass(slots=True)
class Plan:
    group: str
    candidates: list[Deployment]
    context_candidates: list[Deployment] = field(default_factory=list)
    arm: str = ""
    retries: int = 0


@dataclass(slots=True)
class Request:
    """What routing reads of a request."""

    model: str
    api: str
    key_id: str
    body: ChatBody | None = None
    embeddings: EmbeddingsBody | None = None
    # A deployment the caller pinned (policy checked that its key may).
    pin: str = ""
    task: TaskRequest | None = None


def plan(
    routes: RouteTable,
    req: Request,
    board: HealthBoard,
    now: float,
    rng: random.Random,
    default_max_output: int = 4096,
) -> Plan:
    route = resolve(routes, req.model, req.api)
    if req.pin:
        pinned = next((d for d in route.deployments if d.name == req.pin), None)
        if pinned is None:
            raise InvalidRequest(
                f"Deployment {req.pin[:100]!r} does not serve model {req.model!r}.", code="unknown_deployment"
            )
        return Plan(route.name, [pinned])
    if isinstance(req.task, NativeBatchRequest):
        return Plan(route.name, native_batch.candidates(route, req.task))
    candidates = _ordered(route, req, board, now, rng, default_max_output)
    arm = ""
    if route.split:
        arm = _arm(route, req)
        candidates.sort(key=lambda d: d.name != arm)  # stable: the rest keep the strategy's order
    board.chose(candidates[0].name, now)
    larger = routes.groups.get(route.context_fallback) if route.context_fallback else None
    context = _ordered(larger, req, board, now, rng, default_max_output) if larger else []
    return Plan(route.name, candidates, context, arm, route.retries)


def counted_with(routes: RouteTable, req: Request) -> set[str]:
    """The encodings ``plan`` counts ``req`` with (see ``_ordered``): a
    "cost" group of several deployments prices each request by its prompt,
    in the group itself or in its context fallback. The routing stage builds
    them off the event loop before it plans (``tokens.load``)."""
    route = routes.find(req.model)
    if route is None or req.pin or isinstance(req.task, NativeBatchRequest):
        return set()
    names: set[str] = set()
    for group in (route, routes.groups.get(route.context_fallback) if route.context_fallback else None):
        if group is None or group.strategy != "cost" or len(group.deployments) < 2:
            continue
        deployments = group.deployments if req.task is not None else group.deployments[:1]
        names.update(usage.tokenizer_for(d.catalog_model)[0] for d in deployments)
    return names


def plan_moderation(
    routes: RouteTable, check: ModerationCheck, key_id: str, board: HealthBoard, now: float, rng: random.Random
) -> ModerationCheck:
    """A request's guardrail check with its moderation group's deployments,
    in the group's order (a new check: routing's decision replaces policy's
    stamp whole). A name that no group of mode "moderation" serves leaves
    none: the provider then fails the check, closed for "block", open for
    "flag", rather than the chat request failing for its tenant's setting."""
    # What the strategies read of a moderation (its cost by deployment): the text is not needed for an order.
    request = Request(check.model, "moderations", key_id, task=ModerationRequest(model=check.model, input=""))
    try:
        found = plan(routes, request, board, now, rng)
    except GatewayError:
        return ModerationCheck(model=check.model, action=check.action)
    return msgspec.structs.replace(check, group=found.group, candidates=found.candidates, retries=found.retries)


def _ordered(
    route: ModelRoute,
    req: Request,
    board: HealthBoard,
    now: float,
    rng: random.Random,
    default_max_output: int,
) -> list[Deployment]:
    deployments = route.deployments
    if len(deployments) == 1:
        return list(deployments)
    costs: list[int] = []
    if route.strategy == "cost" and req.task is not None:
        costs = [task_usage.worst_case(req.task, d.catalog_model)[1] for d in deployments]
    elif route.strategy == "cost":
        # One count of the prompt, priced per deployment.
        prompt, output = quota.estimate(req.body, req.embeddings, deployments[0].catalog_model, default_max_output)
        costs = [quota.estimate_cost(prompt, output, d.catalog_model) for d in deployments]
    options = board.options(deployments, now, route.strategy, costs)
    return [deployments[o.index] for o in strategies.ranked(route.strategy, options, rng)]


def _arm(route: ModelRoute, req: Request) -> str:
    """The A/B arm: by the request's ``user`` (else its key) or by the key."""
    user = req.body.user if req.body is not None else (req.embeddings.user if req.embeddings else None)
    if isinstance(req.task, ImageRequest):
        user = req.task.user
    sticky = (user or req.key_id) if route.sticky == "user" else req.key_id
    arms = [(name, share) for name, share in route.split.items() if share > 0]
    return strategies.sticky_arm(arms, sticky, salt=route.name) if arms else ""


def routes_by_name(routes: Mapping[str, ModelRoute]) -> RouteTable:
    """A table over plain records (tests, the config's own check)."""
    table = RouteTable()
    for name, route in routes.items():
        table.changed(name, None, route)
    return table
