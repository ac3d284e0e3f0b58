"""A tenant's privacy rules on a call to a REST service that opts in
(``RestService.redact_json``): the same detectors as chat over every string
value of a JSON request body (mask, redact, flag or refuse).

Only a body its ``content-type`` says is JSON is read, and then it must be
JSON: a body that claims to be and is not would otherwise go on unread.
Object keys are not rewritten (a service's schema names them; the
caller's data is in the values). The answer streams back to the caller
through the provider stage unread, so a masked value is not restored in
it: the service sees the placeholder, and so may its answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from typing import Any

import msgspec

from schemas.control import PrivacyRules
from schemas.errors import InvalidRequest
from schemas.rest import RestCall
from services.privacy import Inspection, Slot, inspect_slots

# application/json, and any structured syntax suffix (application/problem+json).
_JSON_TYPE = re.compile(r"application/(?:[a-z0-9.!#$&^_-]+\+)?json\s*(?:;|$)", re.IGNORECASE)
# A key shown in a detection's ``where`` (an audit row): a plain name only;
# any other key (a hostile one could hold the very value found) by position.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def is_json(call: RestCall) -> bool:
    content_type = next((value for name, value in call.headers if name == "content-type"), "")
    return _JSON_TYPE.match(content_type.strip()) is not None


def _step(where: str, key: str, i: int) -> str:
    return f"{where}.{key}" if _PLAIN_KEY.fullmatch(key) else f"{where}[#{i}]"


def _strings(doc: Any) -> Iterator[Slot]:
    """Every string value in ``doc`` (decoded JSON) with a way to replace
    it. Iterative: the depth is the caller's to choose."""
    stack: list[tuple[Any, str]] = [(doc, "body")]
    while stack:
        node, where = stack.pop()
        items = enumerate(node.items()) if isinstance(node, dict) else enumerate(enumerate(node))
        for i, (k, v) in items:
            at = _step(where, k, i) if isinstance(node, dict) else f"{where}[{k}]"
            if isinstance(v, str):
                yield Slot(at, v, partial(node.__setitem__, k))
            elif isinstance(v, dict | list):
                stack.append((v, at))


def _keys(doc: Any) -> Iterator[str]:
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield from node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def inspect_body(call: RestCall, rules: PrivacyRules) -> Inspection:
    """Apply ``rules`` to a JSON ``call.body`` in place, as
    ``privacy.inspect`` does to a chat body: a blocking detection changes
    nothing (the call is refused); otherwise masked and redacted values are
    replaced and the body re-encoded (left byte for byte as it was when
    nothing changed). Any other body is left alone."""
    if not call.body or not is_json(call):
        return Inspection()
    try:
        doc = _decode(call.body)
    except (msgspec.DecodeError, RecursionError):
        raise InvalidRequest(
            "The request body is sent as JSON and is not JSON; this service's privacy rules read every JSON body.",
            code="invalid_json",
        ) from None
    if isinstance(doc, str):
        box = [doc]
        found = inspect_slots([Slot("body", doc, partial(box.__setitem__, 0))], rules)
        doc_out: Any = box[0]
    else:
        found = inspect_slots(list(_strings(doc)), rules, taken=_keys(doc))
        doc_out = doc
    if found.blocked_by is None and any(d.action in ("mask", "redact") for d in found.detections):
        call.body = _encode(doc_out)
    return found
