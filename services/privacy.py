"""A tenant's privacy rules applied to a request: every text the upstream
would receive (messages, their text parts, tool-call arguments and results,
embeddings input) is scanned, and each value found is masked, redacted,
flagged or makes the request refused, per the rule that found it.

Detections say where (which text, which span) and what was done, never the
value itself: they become audit rows, and a value must not reach a log.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import msgspec

from schemas.chat import ChatBody, EmbeddingsBody, TextPart, ToolCall
from schemas.control import CustomDetector, PrivacyAction, PrivacyRules, Tenant
from services import detectors
from services.detectors.base import Finding
from services.detectors.custom import find_keywords, find_pattern
from services.masking import Masker


class Detection(msgspec.Struct, frozen=True):
    detector: str
    action: PrivacyAction
    # Which text: "messages[2].content", "messages[1].tool_calls[0].arguments", "input[3]".
    where: str
    start: int
    end: int


class Inspection(msgspec.Struct):
    detections: list[Detection] = []
    # placeholder -> original, for the answer's restore (empty unless something was masked)
    vault: dict[str, str] = {}

    @property
    def blocked_by(self) -> Detection | None:
        return next((d for d in self.detections if d.action == "block"), None)


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
    for c in rules.custom:
        if bool(c.pattern) == bool(c.keywords):
            return f"custom detector {c.name!r}: give a pattern or keywords, one of the two"
        if c.pattern:
            try:
                re.compile(c.pattern)
            except re.error as exc:
                return f"custom detector {c.name!r}: pattern does not compile ({exc})"
    return None


def masks(rules: PrivacyRules | None) -> bool:
    """Whether answers need restoring (the outbound hop is on the slip)."""
    return rules is not None and ("mask" in rules.detectors.values() or any(c.action == "mask" for c in rules.custom))


# -- where the texts are --------------------------------------------------------

Slot = tuple[str, str, Callable[[str], None]]


def _slots(body: ChatBody | None, embeddings: EmbeddingsBody | None) -> Iterator[Slot]:
    if body is not None:
        for i, m in enumerate(body.messages):
            if isinstance(m.content, str):
                yield f"messages[{i}].content", m.content, lambda v, m=m: setattr(m, "content", v)
            elif m.content:
                for j, part in enumerate(m.content):
                    if isinstance(part, TextPart):
                        yield f"messages[{i}].content[{j}]", part.text, lambda v, p=part: setattr(p, "text", v)
            for j, call in enumerate(m.tool_calls or ()):
                if isinstance(call, ToolCall):
                    f = call.function
                    yield (
                        f"messages[{i}].tool_calls[{j}].arguments",
                        f.arguments,
                        lambda v, f=f: setattr(f, "arguments", v),
                    )
                else:
                    c = call.custom
                    yield f"messages[{i}].tool_calls[{j}].input", c.input, lambda v, c=c: setattr(c, "input", v)
    if embeddings is not None:
        if isinstance(embeddings.input, str):
            yield "input", embeddings.input, lambda v: setattr(embeddings, "input", v)
        else:
            items = embeddings.input
            for i, item in enumerate(items):
                if isinstance(item, str):
                    yield f"input[{i}]", item, lambda v, i=i: items.__setitem__(i, v)


# -- finding and acting -----------------------------------------------------------


def _find(text: str, rules: PrivacyRules) -> list[Finding]:
    found = detectors.scan(text, [d for d in rules.detectors if d in detectors.BUILT_IN])
    for c in rules.custom:
        found += find_pattern(text, c.name, c.pattern) if c.pattern else find_keywords(text, c.name, tuple(c.keywords))
    return detectors.settle(found)


def inspect(body: ChatBody | None, embeddings: EmbeddingsBody | None, rules: PrivacyRules) -> Inspection:
    """Apply ``rules`` in place. A blocking detection changes nothing (the
    request is refused); otherwise masked and redacted values are replaced."""
    actions: dict[str, PrivacyAction] = {**rules.detectors, **{c.name: c.action for c in rules.custom}}
    slots = list(_slots(body, embeddings))
    masker = Masker(text for _, text, _ in slots)
    detections: list[Detection] = []
    changes: list[tuple[Callable[[str], None], str]] = []
    for where, text, put in slots:
        found = _find(text, rules)
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
