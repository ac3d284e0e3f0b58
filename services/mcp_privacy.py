"""A tenant's privacy rules on an MCP call: the same detectors as chat over
every string value of the call's arguments on the way in (mask, redact,
flag or refuse), and on the way out the masked values restored in the
upstream's result and the tenant's output checks applied to its strings.

Only string values are read, never object keys: a tool's schema names its
keys, the caller's data is in the values. Binary payloads (a resource's
``blob``, an image's or audio's ``data``, base64) are left alone: a
detector reading base64 finds noise, and a replacement would corrupt them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec

from schemas.control import PrivacyRules
from schemas.envelope import Privacy
from schemas.errors import InvalidRequest
from schemas.events import Detection
from schemas.mcp import McpCall
from services import detectors, json_strings
from services.masking import OutputScanner, restore
from services.privacy import Inspection, Slot, inspect_slots

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
_BINARY_TYPES = frozenset({"image", "audio"})


def _binary(parent: dict[str, Any], key: str) -> bool:
    return key == "blob" or (key == "data" and parent.get("type") in _BINARY_TYPES)


def inspect_call(call: McpCall, rules: PrivacyRules) -> Inspection:
    """Apply ``rules`` to ``call.arguments`` in place, as ``privacy.inspect``
    does to a chat body: a blocking detection changes nothing (the call is
    refused); otherwise masked and redacted values are replaced and the
    arguments re-encoded (left byte for byte as they were when nothing
    changed). ``call.arguments`` must be a JSON object (policy checked it)."""
    try:
        doc = _decode(call.arguments)
    except (msgspec.DecodeError, RecursionError):
        # Policy let only an object through; nothing undecodable goes on unread.
        raise InvalidRequest("'tool.arguments' must be a JSON object.", code="invalid_arguments") from None
    slots = list(json_strings.strings(doc, "arguments", _binary))
    found = inspect_slots(slots, rules, taken=json_strings.keys(doc))
    if found.blocked_by is None and any(d.action in ("mask", "redact") for d in found.detections):
        call.arguments = _encode(doc)
    return found


def _output_scanner(privacy: Privacy) -> OutputScanner | None:
    if not privacy.output:
        return None
    kinds = list(privacy.output)
    # The caller's own values, restored into the result, are not leaks.
    return OutputScanner(
        lambda text: detectors.find(text, kinds, privacy.phone_region), privacy.output, privacy.vault.values()
    )


def restore_result(result: bytes, privacy: Privacy) -> tuple[bytes, list[Detection]]:
    """The upstream's result JSON for the caller: placeholders in its string
    values restored from ``privacy.vault``, then the tenant's output checks
    (``privacy.output``) applied to them (a key or an address the tool
    returned is masked, redacted or flagged). Returns the new JSON and what
    the checks found (``where`` a path in the result: "result.content[0].text").
    A result that is not JSON is read as one text."""
    scanner = _output_scanner(privacy)
    if not privacy.vault and scanner is None:
        return result, []
    try:
        doc = _decode(result)
    except msgspec.DecodeError:
        text = result.decode("utf-8", "replace")
        out, found = _apply([Slot("result", text, lambda _: None)], privacy.vault, scanner)
        return (out[0].encode() if out else result), found
    if isinstance(doc, str):
        box = [doc]
        slots = [Slot("result", doc, partial(box.__setitem__, 0))]
        out, found = _apply(slots, privacy.vault, scanner)
        return (_encode(box[0]) if out else result), found
    slots = list(json_strings.strings(doc, "result", _binary))
    out, found = _apply(slots, privacy.vault, scanner)
    return (_encode(doc) if out else result), found


def _apply(
    slots: list[Slot], vault: dict[str, str], scanner: OutputScanner | None
) -> tuple[list[str], list[Detection]]:
    """Restore and check each slot, putting back those that changed; the
    new texts (empty when none changed) and the detections."""
    changed: list[str] = []
    found: list[Detection] = []
    check: Callable[[str], str] = scanner.whole if scanner is not None else (lambda t: t)
    for slot in slots:
        seen = len(scanner.found) if scanner is not None else 0
        text = check(restore(slot.text, vault))
        if scanner is not None:
            found += [
                Detection(f.detector, scanner.actions.get(f.detector, "flag"), slot.where, f.start, f.end)
                for f in scanner.found[seen:]
            ]
        if text != slot.text:
            slot.put(text)
            changed.append(text)
    return changed, found
