"""A tenant's privacy rules applied to a request: every text the upstream
would receive (messages, their text parts, tool-call arguments and results,
embeddings input) is scanned, and each value found is masked, redacted,
flagged or makes the request refused, per the rule that found it.

Detections say where (which text, which span) and what was done, never the
value itself: they become audit rows, and a value must not reach a log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import NamedTuple

import msgspec
import phonenumbers

from schemas.chat import ChatBody, EmbeddingsBody, TextPart, ToolCall
from schemas.control import CustomDetector, PrivacyAction, PrivacyRules, Tenant
from schemas.errors import InvalidRequest
from schemas.events import Detection, DetectionEvent
from schemas.ids import new_id
from services import detectors
from services.detectors.base import Finding
from services.detectors.custom import check_pattern, find_keywords, find_pattern
from services.injection import score as injection_score
from services.masking import Masker


class Inspection(msgspec.Struct):
    detections: list[Detection] = []
    # placeholder -> original, for the answer's restore (empty unless something was masked)
    vault: dict[str, str] = {}

    @property
    def blocked_by(self) -> Detection | None:
        return next((d for d in self.detections if d.action == "block"), None)


# A dense prompt can hold thousands of values; each event stays well under a
# NATS message.
DETECTIONS_PER_EVENT = 1000


def events(
    request_id: str, tenant_id: str, found: list[Detection], rules_version: int, now_ns: int
) -> list[DetectionEvent]:
    """The audit events for ``found``: few, whatever its length."""
    return [
        DetectionEvent(
            event_id=new_id(now_ns),
            request_id=request_id,
            at_ns=now_ns,
            tenant_id=tenant_id,
            found=found[i : i + DETECTIONS_PER_EVENT],
            rules_version=rules_version,
        )
        for i in range(0, len(found), DETECTIONS_PER_EVENT)
    ]


def rules_of(tenant: Tenant) -> PrivacyRules | None:
    """The tenant's rules, its first-form redaction rules read as custom
    detectors that redact. None when it has neither."""
    if tenant.privacy is None and not tenant.redaction_rules:
        return None
    rules = tenant.privacy or PrivacyRules()
    if not tenant.redaction_rules:
        return rules
    legacy = [CustomDetector(name=r.name, pattern=r.pattern, action="redact") for r in tenant.redaction_rules]
    return msgspec.structs.replace(rules, custom=[*rules.custom, *legacy])


def problem(rules: PrivacyRules) -> str | None:
    """Why ``rules`` cannot be used, or None."""
    unknown = sorted(set(rules.detectors) - set(detectors.BUILT_IN))
    if unknown:
        return f"no built-in detector {', '.join(unknown)}; there are {', '.join(detectors.BUILT_IN)}"
    names = [c.name for c in rules.custom]
    if len(set(names)) != len(names) or set(names) & set(detectors.BUILT_IN):
        return "custom detectors need names of their own"
    unknown = sorted(set(rules.output) - set(detectors.BUILT_IN))
    if unknown:
        return f"output: no built-in detector {', '.join(unknown)}"
    if "block" in rules.output.values():
        return "output: an answer is masked, redacted or flagged, not blocked (it is already written)"
    if rules.phone_region not in phonenumbers.SUPPORTED_REGIONS:
        return f"phone_region {rules.phone_region!r} is no region libphonenumber knows (an ISO 3166 code: US, DE, JP)"
    if rules.injection is not None and not 0 < rules.injection.threshold <= 1:
        return "injection.threshold must be above 0 and at most 1"
    for c in rules.custom:
        if bool(c.pattern) == bool(c.keywords):
            return f"custom detector {c.name!r}: give a pattern or keywords, one of the two"
        if c.pattern:
            try:  # the engine that runs it (RE2), not Python's: what runs is what is checked
                check_pattern(c.name, c.pattern)
            except InvalidRequest as exc:
                return exc.message
    return None


def masks(rules: PrivacyRules | None) -> bool:
    """Whether answers need work for the caller (restoring, output checks):
    then no cached answer may stand in for one."""
    return rules is not None and (
        "mask" in rules.detectors.values() or any(c.action == "mask" for c in rules.custom) or bool(rules.output)
    )


# -- where the texts are --------------------------------------------------------


class Slot(NamedTuple):
    """One text the upstream would receive: where it is, the text, how to
    put a new one there, and who wrote it (a message's role; "" for input)."""

    where: str
    text: str
    put: Callable[[str], None]
    role: str = ""


def _slots(body: ChatBody | None, embeddings: EmbeddingsBody | None) -> Iterator[Slot]:
    if body is not None:
        for i, m in enumerate(body.messages):
            if isinstance(m.content, str):
                yield Slot(f"messages[{i}].content", m.content, partial(setattr, m, "content"), m.role)
            elif m.content:
                for j, part in enumerate(m.content):
                    if isinstance(part, TextPart):
                        yield Slot(f"messages[{i}].content[{j}]", part.text, partial(setattr, part, "text"), m.role)
            for j, call in enumerate(m.tool_calls or ()):
                if isinstance(call, ToolCall):
                    f = call.function
                    yield Slot(
                        f"messages[{i}].tool_calls[{j}].arguments",
                        f.arguments,
                        partial(setattr, f, "arguments"),
                        m.role,
                    )
                else:
                    c = call.custom
                    yield Slot(f"messages[{i}].tool_calls[{j}].input", c.input, partial(setattr, c, "input"), m.role)
    if embeddings is not None:
        if isinstance(embeddings.input, str):
            yield Slot("input", embeddings.input, partial(setattr, embeddings, "input"))
        else:
            items = embeddings.input
            for i, item in enumerate(items):
                if isinstance(item, str):
                    yield Slot(f"input[{i}]", item, partial(items.__setitem__, i))


# -- finding and acting -----------------------------------------------------------


def findings(text: str, rules: PrivacyRules) -> list[Finding]:
    """What ``rules`` find in ``text``, in text order, none overlapping."""
    # Settled once, with the tenant's own findings among them.
    found = detectors.find(text, [d for d in rules.detectors if d in detectors.BUILT_IN], rules.phone_region)
    for c in rules.custom:
        found += find_pattern(text, c.name, c.pattern) if c.pattern else find_keywords(text, c.name, tuple(c.keywords))
    return detectors.settle(found)


def inspect(
    body: ChatBody | None,
    embeddings: EmbeddingsBody | None,
    rules: PrivacyRules,
    find: Callable[[str], list[Finding]] | None = None,
) -> Inspection:
    """Apply ``rules`` in place. A blocking detection changes nothing (the
    request is refused); otherwise masked and redacted values are replaced.
    ``find`` stands in for scanning a text under ``rules`` (a memo of it,
    ``services.scan_memo``)."""
    return inspect_slots(list(_slots(body, embeddings)), rules, find=find)


def inspect_slots(
    slots: list[Slot],
    rules: PrivacyRules,
    taken: Iterable[str] = (),
    find: Callable[[str], list[Finding]] | None = None,
) -> Inspection:
    """``inspect`` over any texts (an MCP call's arguments too): ``taken``
    are other texts of the request no placeholder may already be in."""
    find = find or partial(findings, rules=rules)
    actions: dict[str, PrivacyAction] = {**rules.detectors, **{c.name: c.action for c in rules.custom}}
    masker = Masker([*(slot.text for slot in slots), *taken])
    detections: list[Detection] = []
    changes: list[tuple[Callable[[str], None], str]] = []
    for where, text, put, _ in slots:
        found = find(text)
        if not found:
            continue
        out, at = [], 0
        for f in found:
            action = actions.get(f.detector, "redact")
            detections.append(Detection(f.detector, action, where, f.start, f.end))
            out.append(text[at : f.start])
            value = text[f.start : f.end]
            if action == "mask":
                out.append(masker.placeholder(f.detector, value))
            elif action == "redact":
                out.append(f"[REDACTED:{f.detector}]")
            else:  # flag (kept), block (the request goes nowhere)
                out.append(value)
            at = f.end
        out.append(text[at:])
        changes.append((put, "".join(out)))
    inspection = Inspection(detections=detections, vault=masker.vault)
    if inspection.blocked_by is None:
        for put, text in changes:
            put(text)
    return inspection


def injection(body: ChatBody | None, rules: PrivacyRules) -> list[Detection]:
    """The user and tool texts whose injection score reaches the tenant's
    threshold, one detection per rule that matched (``injection:<rule>``)."""
    check = rules.injection
    if check is None or body is None:
        return []
    out = []
    for slot in _slots(body, None):
        if slot.role not in ("user", "tool"):
            continue  # the system prompt is the tenant's own
        verdict = injection_score(slot.text)
        if verdict.score >= check.threshold:
            out += [Detection(f"injection:{n}", check.action, slot.where, 0, len(slot.text)) for n in verdict.matched]
    return out
