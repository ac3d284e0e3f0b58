"""A tenant's moderation guardrail on its chat requests: which requests it
covers, which of their texts a moderation model reads, and what its
verdicts mean (``TenantModeration``).

Policy stamps the check on a request (``check_for``), routing finds the
moderation group's deployments, and the provider calls one of them before
the chat call (``services.providers.moderation_gate``) with every message's
text content as one input each, so a verdict says which text it is about.
"block" refuses a flagged request with a 400 ``content_flagged`` that names
the categories (no chat call); "flag" lets it through. Either way each
flagged category of each text is a ``Detection`` (detector
"moderation:<category>"), recorded in the detections table as the
redaction stage records its own; a moderation that could not be had is
"moderation:unchecked". Nothing here knows of NATS or HTTP.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from schemas.chat import ChatBody, Cost, TextPart
from schemas.control import GUARDED_APIS, Tenant, TenantModeration
from schemas.envelope import Envelope, GuardrailAction, ModerationCheck
from schemas.errors import ErrorType, GatewayError, InvalidRequest
from schemas.events import Detection
from schemas.tasks import ModerationRequest, ModerationVerdict

# Inputs in one moderation request: as many as /v1/moderations takes from a
# caller (``services.apis.moderations``, not imported: policy would load the
# client API's renderers for a number).
MAX_INPUTS = 2048
DETECTOR_PREFIX = "moderation:"
# The detection of a request the guardrail could not check (its upstream failed).
UNCHECKED = DETECTOR_PREFIX + "unchecked"
# An upstream's category names become detector names and words of an error
# message: anything else is shown as "other".
_CATEGORY = re.compile(r"[a-z0-9_/-]{1,64}")
# A refusal names at most this many places (a long chat may be flagged in hundreds).
MAX_NAMED_PLACES = 5


class ModerationUnavailable(GatewayError):
    """The tenant's moderation could not be had (its upstream failed, or no
    deployment serves its model) and the tenant blocks: the guardrail fails
    closed, and nothing reaches the chat model."""

    status = 503
    type = ErrorType.SERVER
    code = "moderation_unavailable"
    retryable = True


class Text(NamedTuple):
    """One input of the moderation: where in the request it is, and its text."""

    where: str
    text: str


def check_for(tenant: Tenant | None, env: Envelope) -> ModerationCheck | None:
    """The check policy stamps on a request: one of the tenant's covered APIs
    with a chat body (a token count makes no answer, and is not covered)."""
    setting = tenant.moderation if tenant is not None else None
    if setting is None or env.body is None or env.api not in setting.apis:
        return None
    return ModerationCheck(model=setting.model, action=setting.action)


def problem(setting: TenantModeration) -> str | None:
    """What is wrong with a setting, apart from whether its model is served."""
    if not setting.model or len(setting.model) > 128:
        return "moderation.model must name a model group (1-128 characters)"
    if not setting.apis or len(set(setting.apis)) != len(setting.apis):
        return f"moderation.apis must list some of {', '.join(GUARDED_APIS)}, each once"
    return None


def texts(body: ChatBody) -> list[Text]:
    """Every message's text content (a string, or its text parts), in order,
    as the upstream would receive it (masked, if the tenant masks). More
    than a moderation request may hold are joined into runs of neighbours."""
    found: list[Text] = []
    for i, m in enumerate(body.messages):
        if isinstance(m.content, str):
            if m.content:
                found.append(Text(f"messages[{i}].content", m.content))
        elif m.content:
            for j, part in enumerate(m.content):
                if isinstance(part, TextPart) and part.text:
                    found.append(Text(f"messages[{i}].content[{j}]", part.text))
    if len(found) <= MAX_INPUTS:
        return found
    size = -(-len(found) // MAX_INPUTS)
    runs = [found[k : k + size] for k in range(0, len(found), size)]
    return [Text(f"{run[0].where}..{run[-1].where}", "\n\n".join(t.text for t in run)) for run in runs]


def request_of(check: ModerationCheck, inputs: list[Text]) -> ModerationRequest:
    """The moderation request: one input per text, so verdicts map back to them."""
    return ModerationRequest(model=check.model, input=[t.text for t in inputs])


def found(inputs: list[Text], verdicts: list[ModerationVerdict], action: GuardrailAction) -> list[Detection]:
    """A detection for each flagged category of each text (the whole text is
    its span: a moderation judges a text, not a part of it)."""
    out: list[Detection] = []
    for text, verdict in zip(inputs, verdicts, strict=True):
        categories = sorted({_category(name) for name, hit in verdict.categories.items() if hit})
        if verdict.flagged and not categories:
            categories = ["flagged"]
        out += [Detection(DETECTOR_PREFIX + c, action, text.where, 0, len(text.text)) for c in categories]
    return out


def unchecked(action: GuardrailAction) -> Detection:
    """The mark of a request the guardrail could not check."""
    return Detection(UNCHECKED, action, "request", 0, 0)


def refusal(detections: list[Detection]) -> InvalidRequest:
    """The 400 of a blocked request: the categories and where, never the text."""
    categories = sorted({d.detector.removeprefix(DETECTOR_PREFIX) for d in detections})
    places = list(dict.fromkeys(d.where for d in detections))
    named = ", ".join(places[:MAX_NAMED_PLACES])
    if len(places) > MAX_NAMED_PLACES:
        named += f" and {len(places) - MAX_NAMED_PLACES} more"
    return InvalidRequest(
        f"The request was flagged by this tenant's moderation ({', '.join(categories)}, in {named}); "
        "it was not sent to the model.",
        code="content_flagged",
    )


def unavailable(check: ModerationCheck, why: GatewayError | None) -> ModerationUnavailable:
    """The 503 of a request the guardrail could not check, for a tenant that blocks."""
    reason = f"its upstream failed ({why.code})" if why is not None else "no deployment serves its model"
    return ModerationUnavailable(
        f"This tenant's moderation ({check.model[:128]!r}) could not check the request: {reason}; "
        "it was not sent to the model."
    )


def plus(a: Cost, b: Cost) -> Cost:
    """Two calls' costs as one (the guardrail's and the chat's), part by part."""
    return Cost(
        input=a.input + b.input,
        cached_input=a.cached_input + b.cached_input,
        output=a.output + b.output,
        call=a.call + b.call,
        units=a.units + b.units,
    )


def _category(name: str) -> str:
    return name if _CATEGORY.fullmatch(name) else "other"
