"""Reversible masking: found values become placeholders such as
``[EMAIL_1]`` on the way in, and the placeholders become the values again in
the answer, also when the answer streams and a placeholder is split across
chunks.

Within one request the same value is always the same placeholder, and a
placeholder is never one the request's own text already holds, so restoring
gives back exactly what the caller wrote.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import msgspec

from schemas.chat import CustomToolCall, Delta, FunctionDelta, Message, TextPart, ToolCall, ToolCallDelta
from services import detectors
from services.detectors.base import Finding

PLACEHOLDER = re.compile(r"\[([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)_(\d+)\]")
_LABEL_CHARS = re.compile(r"[^A-Z0-9]+")


def label_of(detector: str) -> str:
    """EMAIL, PHONE, CARD, ...; a tenant rule's name made to fit (``emp-id`` -> EMP_ID)."""
    label = _LABEL_CHARS.sub("_", detector.upper()).strip("_")
    return label if label and label[0].isalpha() else f"X_{label}".rstrip("_")


class Masker:
    """The placeholders of one request. ``texts`` are all the texts the
    request carries: no placeholder chosen is already among them."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        self.vault: dict[str, str] = {}  # placeholder -> original
        self._by_value: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}
        self._taken = {m.group() for t in texts for m in PLACEHOLDER.finditer(t)}

    def placeholder(self, detector: str, value: str) -> str:
        label = label_of(detector)
        known = self._by_value.get((label, value))
        if known is not None:
            return known
        n = self._counts.get(label, 0)
        while True:
            n += 1
            candidate = f"[{label}_{n}]"
            if candidate not in self._taken:
                break
        self._counts[label] = n
        self._by_value[(label, value)] = candidate
        self.vault[candidate] = value
        return candidate

    def mask(self, text: str, findings: list[Finding]) -> str:
        """``text`` with each finding (in text order, none overlapping) replaced."""
        out, at = [], 0
        for f in findings:
            out.append(text[at : f.start])
            out.append(self.placeholder(f.detector, text[f.start : f.end]))
            at = f.end
        out.append(text[at:])
        return "".join(out)


def restore(text: str, vault: dict[str, str]) -> str:
    """Placeholders of the vault replaced by their values; anything else as it is."""
    if not vault or "[" not in text:
        return text
    return PLACEHOLDER.sub(lambda m: vault.get(m.group(), m.group()), text)


class StreamRestorer:
    """Restores a streamed answer chunk by chunk. It holds back only a tail
    that could still become one of the vault's placeholders (from its last
    ``[``, never as long as the longest placeholder) and passes the rest on
    at once, so a stream stays a stream."""

    def __init__(self, vault: dict[str, str]) -> None:
        self.vault = vault
        self._held = ""
        # Every start a placeholder can have, e.g. "[", "[E", ..., "[EMAIL_1".
        self._starts = {p[:i] for p in vault for i in range(1, len(p))}

    @property
    def held(self) -> str:
        return self._held

    def feed(self, chunk: str) -> str:
        text = self._held + chunk
        cut = text.rfind("[")
        if cut != -1 and text[cut:] in self._starts:
            self._held, text = text[cut:], text[:cut]
        else:
            self._held = ""
        return restore(text, self.vault)

    def flush(self) -> str:
        rest, self._held = self._held, ""
        return restore(rest, self.vault)


def _where(choice: int, call: int) -> str:
    return f"choices[{choice}].content" if call == -1 else f"choices[{choice}].tool_calls[{call}].arguments"


class AnswerRestorer:
    """Restores an answer for the caller: streamed deltas (text and tool-call
    arguments, per choice and per call, each with its own hold-back) or a
    whole message; and, given ``output`` (a new scanner for each text),
    checks the text and the tool-call arguments for values the caller never
    gave. It returns copies: what the gateway keeps (call logs, the cache)
    stays as the upstream wrote it."""

    def __init__(self, vault: dict[str, str], output: Callable[[], OutputScanner] | None = None) -> None:
        self.vault = vault
        # Keyed by (choice, tool call), the call -1 being the choice's text.
        self._streams: dict[tuple[int, int], StreamRestorer] = {}
        self._output = output
        self._scanners: dict[tuple[int, int], OutputScanner] = {}

    @property
    def found(self) -> list[tuple[str, Finding]]:
        """What the output checks found so far: where ("choices[0].content",
        "choices[0].tool_calls[1].arguments") and the span there."""
        return [(_where(*key), f) for key, s in sorted(self._scanners.items()) for f in s.found]

    def _scanner(self, choice: int, call: int = -1) -> OutputScanner | None:
        if self._output is None:
            return None
        key = (choice, call)
        if key not in self._scanners:
            self._scanners[key] = self._output()
        return self._scanners[key]

    def _feed(self, choice: int, call: int, text: str) -> str:
        key = (choice, call)
        if key not in self._streams:
            self._streams[key] = StreamRestorer(self.vault)
        text = self._streams[key].feed(text)
        scanner = self._scanner(choice, call)
        return scanner.feed(text) if scanner is not None else text

    def delta(self, d: Delta) -> Delta:
        out = msgspec.structs.replace(d)
        if d.content:
            out.content = self._feed(d.index, -1, d.content)
        if d.tool_calls:
            calls = []
            for tc in d.tool_calls:
                if tc.function is not None and tc.function.arguments:
                    args = self._feed(d.index, tc.index, tc.function.arguments)
                    tc = msgspec.structs.replace(tc, function=msgspec.structs.replace(tc.function, arguments=args))
                calls.append(tc)
            out.tool_calls = calls
        return out

    def rest(self) -> list[Delta]:
        """What is still held at the end of a stream, as deltas to send before the last reply."""
        out = []
        for key in sorted(self._streams.keys() | self._scanners.keys()):
            choice, call = key
            stream, scanner = self._streams.get(key), self._scanners.get(key)
            text = stream.flush() if stream is not None else ""
            if scanner is not None:
                text = scanner.feed(text) + scanner.flush()
            if not text:
                continue
            if call == -1:
                out.append(Delta(index=choice, content=text))
            else:
                out.append(
                    Delta(index=choice, tool_calls=[ToolCallDelta(index=call, function=FunctionDelta(arguments=text))])
                )
        return out

    def _whole(self, text: str, choice: int, call: int) -> str:
        text = restore(text, self.vault)
        scanner = self._scanner(choice, call)
        return scanner.whole(text) if scanner is not None else text

    def _call(self, c: ToolCall | CustomToolCall, choice: int, k: int) -> ToolCall | CustomToolCall:
        if isinstance(c, ToolCall):
            return msgspec.structs.replace(
                c, function=msgspec.structs.replace(c.function, arguments=self._whole(c.function.arguments, choice, k))
            )
        return msgspec.structs.replace(
            c, custom=msgspec.structs.replace(c.custom, input=self._whole(c.custom.input, choice, k))
        )

    def message(self, m: Message | None, choice: int = 0) -> Message | None:
        if m is None or (not self.vault and self._output is None):
            return m
        out = msgspec.structs.replace(m)
        if isinstance(m.content, str):
            out.content = self._whole(m.content, choice, -1)
        elif m.content:
            out.content = [
                msgspec.structs.replace(p, text=self._whole(p.text, choice, -1)) if isinstance(p, TextPart) else p
                for p in m.content
            ]
        if m.tool_calls:
            out.tool_calls = [self._call(c, choice, k) for k, c in enumerate(m.tool_calls)]
        return out


# Of what was passed on, at most this much is kept for the detectors to look
# at again, from a fresh start (``detectors.fresh_start``): prose has one
# every few words. A run without one (digits and spaces, capitals) is read
# from a blind start this far back: past a number's 60 characters twice
# over, so what a number half-seen there could be ends before the held text.
# Kept longer, such a run cost each chunk 1.4 µs a character (phone checks):
# 2.3 ms a chunk at 1,024.
KEPT = 160


class OutputScanner:
    """Checks an answer for values the caller never gave (a key or an email
    the model produced): each found one is replaced (``mask``: a placeholder,
    ``redact``: ``[REDACTED:kind]``) or only reported (``flag``).

    Streamed, it passes on at once all but what a detector says could still
    be the start of a value (``unfinished``: a word that could become an
    address, a key's prefix until the key ends, a private key block until
    its END line), so the caller receives, for any split into chunks,
    exactly what ``whole`` gives for the joined text, and never a value it
    has started to pass on. (Bar one case: in a run of over ``KEPT``
    characters with no fresh start, a chain of digit groups may be split
    into numbers otherwise than in the whole.)"""

    def __init__(
        self,
        find: Callable[[str], list[Finding]],
        actions: dict[str, str],
        given: Iterable[str] = (),
        unfinished: Callable[[str], int] | None = None,
    ) -> None:
        # ``find``: the detectors' findings with overlaps not yet settled
        # (``detectors.find``): the scanner settles them itself (see
        # ``_find``). ``unfinished`` must speak for the same kinds: by
        # default those ``actions`` names, which is what the provider's
        # ``find`` looks for.
        self._find_all, self.actions = find, actions
        self._unfinished = unfinished or detectors.unfinished_of(actions)
        self.given = set(given)  # the caller's own values, restored into the answer: not a leak
        self.found: list[Finding] = []
        self._held = ""
        # The end of what was passed on, from where a detector's search of it
        # reads as it does in the whole answer: context for the held text.
        self._passed = ""
        self._masker = Masker()

    @property
    def held(self) -> str:
        """What a stream has sent that is not passed on yet."""
        return self._held

    def _apply(self, text: str, findings: list[Finding]) -> str:
        out, at = [], 0
        for f in findings:
            value = text[f.start : f.end]
            action = self.actions.get(f.detector, "flag")
            if value in self.given:
                continue
            self.found.append(f)
            if action == "flag":
                continue
            out.append(text[at : f.start])
            out.append(self._masker.placeholder(f.detector, value) if action == "mask" else f"[REDACTED:{f.detector}]")
            at = f.end
        out.append(text[at:])
        return "".join(out)

    def _find(self, text: str, start: int = 0) -> list[Finding]:
        """The findings that start at ``start`` or later, overlaps not yet
        settled. Those before were settled when passed on; a value seen there
        again must not crowd out one of the held text."""
        return [f for f in self._find_all(text) if f.start >= start]

    def whole(self, text: str) -> str:
        return self._apply(text, detectors.settle(self._find(text))) if text else text

    def feed(self, chunk: str) -> str:
        shift = len(self._passed)
        text = self._passed + self._held + chunk
        # Before ``cut`` every detector has read all it will, whatever follows.
        cut = max(shift, self._unfinished(text))
        if cut == shift:  # all of it could still be (part of) a value: nothing to look at yet
            self._held = text[shift:]
            return ""
        found = self._find(text, shift)
        cut = _before_any(found, cut)  # a finished value that an open one overlaps waits with it
        passed = [Finding(f.detector, f.start - shift, f.end - shift) for f in found if f.end <= cut]
        self._held = text[cut:]
        self._keep_passed(text[:cut])
        return self._apply(text[shift:cut], detectors.settle(passed) if passed else passed)

    def _keep_passed(self, text: str) -> None:
        text = text[-KEPT:]
        self._passed = text[detectors.fresh_start(text, len(text)) :]

    def flush(self) -> str:
        rest, self._held = self._held, ""
        if not rest:
            return rest
        shift = len(self._passed)
        found = self._find(self._passed + rest, shift)
        return self._apply(rest, detectors.settle([Finding(f.detector, f.start - shift, f.end - shift) for f in found]))


def _before_any(found: list[Finding], cut: int) -> int:
    """``cut``, or earlier so that no finding spans it: a value reaching
    past it waits whole. From the latest start back, as moving the cut to one
    finding's start can make an earlier, overlapping one span it."""
    for f in sorted(found, key=lambda f: f.start, reverse=True):
        if f.start < cut < f.end:
            cut = f.start
    return cut
