"""A tenant's privacy rules on a call to a REST service that opts in
(``RestService.redact_json``): the same detectors as chat over every string
value of a JSON request body (mask, redact, flag or refuse).

Only a body a ``content-type`` header says is JSON is read (any of them,
should it send several), and then it must be JSON: a body that claims to
be and is not would otherwise go on unread.
Object keys are not rewritten (a service's schema names them; the
caller's data is in the values). The answer streams back to the caller
through the provider stage unread, so a masked value is not restored in
it: the service sees the placeholder, and so may its answer.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import msgspec

from schemas.control import PrivacyRules
from schemas.errors import InvalidRequest
from schemas.rest import RestCall
from services import json_strings
from services.privacy import Inspection, Slot, inspect_slots

# application/json, and any structured syntax suffix (application/problem+json).
_JSON_TYPE = re.compile(r"application/(?:[a-z0-9.!#$&^_-]+\+)?json\s*(?:;|$)", re.IGNORECASE)
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def is_json(call: RestCall) -> bool:
    """Whether any of the call's ``content-type`` headers says JSON: which
    of several a service believes is its own business."""
    return any(name == "content-type" and _JSON_TYPE.match(value.strip()) for name, value in call.headers)


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
        found = inspect_slots(list(json_strings.strings(doc, "body")), rules, taken=json_strings.keys(doc))
        doc_out = doc
    if found.blocked_by is None and any(d.action in ("mask", "redact") for d in found.detections):
        call.body = _encode(doc_out)
    return found
