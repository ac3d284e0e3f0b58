"""Which OpenAPI path a REST call matched (``/users/42`` -> ``/users/{id}``):
the route template its row records, so analytics group calls by operation,
not by every id a caller sent.

A service's document is compiled once per version of it into a trie of
path segments (``RouteTable``); a lookup walks at most one branch per
literal segment plus the templated ones beside it, so a document with
hundreds of paths costs about what one with ten does. As OpenAPI says, a
concrete path wins over a templated one (``/users/me`` over
``/users/{id}``), deciding from the left.

Documents are an admin's upload or fetched from the service: every part of
one is checked for its type, and its size bounds what is compiled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

import msgspec

# Past these, the rest of a document's paths (or of a path's segments) are
# not compiled: no real API has more, and a hostile one costs no more.
MAX_PATHS = 10_000
MAX_SEGMENTS = 64
# A template the row may carry (policy refuses a longer route).
MAX_TEMPLATE_CHARS = 1024
# Nodes one lookup may try: a real API's path meets a handful, but a
# document of thousands of templated paths that all fit a path's segments
# could have a lookup try every node (a fifth of a second on the event loop).
MAX_VISITS = 256
# A templated segment: literal text around ``{name}`` parts (``{id}.json``).
_PARAM = re.compile(r"\{[^{}/]+\}")
MAX_PARAMS_PER_SEGMENT = 4

_decode_doc = msgspec.json.Decoder(dict[str, object]).decode


@dataclass(slots=True)
class _Node:
    literal: dict[str, _Node] = field(default_factory=dict)
    # Templated segments, each as the literal text around its parameters.
    templated: list[tuple[tuple[str, ...], _Node]] = field(default_factory=list)
    # The template that ends at this node, if one does.
    template: str = ""


def _segments(path: str) -> list[str]:
    # "/a/b/" and "/a/b" are one route: callers differ on trailing slashes.
    return path.strip("/").split("/") if path.strip("/") else []


class _TooManyParams(Exception):
    pass


def _literals(segment: str) -> tuple[str, ...] | None:
    """The text before, between and after a segment's ``{name}`` parts
    (one more than the parameters); None for a literal segment."""
    found = list(_PARAM.finditer(segment))
    if not found:
        return None
    if len(found) > MAX_PARAMS_PER_SEGMENT:
        raise _TooManyParams
    cuts = [0, *(i for m in found for i in (m.start(), m.end())), len(segment)]
    return tuple(segment[cuts[i] : cuts[i + 1]] for i in range(0, len(cuts), 2))


def _fits(literals: tuple[str, ...], segment: str) -> bool:
    """Whether ``segment`` is the literals with one or more characters of
    any kind in place of each parameter. Each literal between two
    parameters is taken at its leftmost place: that leaves the most room
    for the rest, so a match exists if and only if this one does. Linear
    in the segment, where a regex of lazy groups backtracks (a segment of
    three parameters cost it minutes on 8 KB of path)."""
    first, *between, last = literals
    end = len(segment) - len(last)
    if end < len(first) or not segment.startswith(first) or not segment.endswith(last):
        return False
    at = len(first)
    for text in between:
        found = segment.find(text, at + 1, end)
        if found < 0:
            return False
        at = found + len(text)
    return end > at


class RouteTable:
    """The paths of one OpenAPI document, ready to match request paths."""

    def __init__(self, templates: list[str]) -> None:
        self._root = _Node()
        for template in templates[:MAX_PATHS]:
            self._add(template)

    def _add(self, template: str) -> None:
        if not template.startswith("/") or len(template) > MAX_TEMPLATE_CHARS or not template.isprintable():
            return
        segments = _segments(template)
        if len(segments) > MAX_SEGMENTS:
            return
        try:
            shapes = [_literals(s) for s in segments]
        except _TooManyParams:
            return
        node = self._root
        for segment, literals in zip(segments, shapes, strict=True):
            if literals is None:
                node = node.literal.setdefault(segment, _Node())
                continue
            for known, child in node.templated:
                if known == literals:
                    node = child
                    break
            else:
                child = _Node()
                node.templated.append((literals, child))
                node = child
        node.template = node.template or template

    def match(self, path: str) -> str:
        """The template ``path`` (no query string; percent-encoded as sent)
        matched, or "" when none did."""
        raw = _segments(path)
        if len(raw) > MAX_SEGMENTS:
            return ""
        # Each segment decoded alone: an encoded "/" stays inside its segment.
        return _Walk([unquote(s) for s in raw]).from_node(self._root, 0)


class _Walk:
    """One lookup's depth-first walk, within ``MAX_VISITS`` nodes."""

    def __init__(self, segments: list[str]) -> None:
        self.segments = segments
        self.left = MAX_VISITS

    def from_node(self, node: _Node, at: int) -> str:
        self.left -= 1
        if self.left < 0:
            return ""
        if at == len(self.segments):
            return node.template
        segment = self.segments[at]
        child = node.literal.get(segment)
        if child is not None and (found := self.from_node(child, at + 1)):
            return found
        for literals, child in node.templated:
            if _fits(literals, segment) and (found := self.from_node(child, at + 1)):
                return found
        return ""


def templates_of(document: bytes) -> list[str]:
    """The path templates of an OpenAPI document (JSON): the keys of its
    ``paths`` object; none for a document that is not one."""
    if not document:
        return []
    try:
        doc = _decode_doc(document)
    except (msgspec.DecodeError, RecursionError):
        return []
    paths = doc.get("paths")
    if not isinstance(paths, dict):
        return []
    return [p for p in paths if isinstance(p, str)]


EMPTY = RouteTable([])


class RouteTables:
    """Each service's table, compiled once per version of its document.

    Keyed by the service's KV key; a record's document is compared by
    identity first (the mirror replaces a record whole when it changes, so
    an unchanged record keeps the same bytes object), then by value, so a
    re-seed that writes the same document compiles nothing."""

    def __init__(self) -> None:
        self._tables: dict[str, tuple[bytes, RouteTable]] = {}

    def for_service(self, key: str, document: bytes) -> RouteTable:
        if not document:
            return EMPTY
        held = self._tables.get(key)
        if held is not None and (held[0] is document or held[0] == document):
            if held[0] is not document:
                self._tables[key] = (document, held[1])
            return held[1]
        table = RouteTable(templates_of(document))
        self._tables[key] = (document, table)
        return table
