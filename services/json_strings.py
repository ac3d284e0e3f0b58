"""The string values of a decoded JSON document, each with a way to replace
it in place, and its object keys: what the privacy detectors read in an MCP
call's arguments and result (``services.mcp_privacy``) and in a REST
call's JSON body (``services.rest_privacy``).

Object keys are never values to rewrite (a tool's or service's schema
names them; the caller's data is in the values), and never shown as they
are in a detection's ``where`` unless plain: a hostile key could hold the
very value found.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from services.privacy import Slot

# A key shown in a detection's ``where`` (an audit row): a plain name only;
# any other key by its position.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")

# Whether a string under this key of this object is left unread (base64, say).
Skip = Callable[[dict[str, Any], str], bool]


def _step(where: str, key: str, i: int) -> str:
    return f"{where}.{key}" if _PLAIN_KEY.fullmatch(key) else f"{where}[#{i}]"


def strings(doc: Any, root: str, skip: Skip | None = None) -> Iterator[Slot]:
    """Every string inside ``doc``'s objects and arrays (none for a
    document that is neither), its ``where`` a path from ``root``
    (``arguments.to[0]``). Iterative: the depth is the caller's to choose."""
    stack: list[tuple[Any, str]] = [(doc, root)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            for i, (k, v) in enumerate(node.items()):
                if isinstance(v, str):
                    if skip is None or not skip(node, k):
                        yield Slot(_step(where, k, i), v, partial(node.__setitem__, k))
                elif isinstance(v, dict | list):
                    stack.append((v, _step(where, k, i)))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, str):
                    yield Slot(f"{where}[{i}]", v, partial(node.__setitem__, i))
                elif isinstance(v, dict | list):
                    stack.append((v, f"{where}[{i}]"))


def keys(doc: Any) -> Iterator[str]:
    """Every object key in ``doc``: a placeholder must not look like one."""
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield from node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
