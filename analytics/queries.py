"""Named analytics queries: parameterised SQL files in ``analytics/named/``,
answered over NATS (``sluice.v1.analytics.query``) so tools need no
ClickHouse driver, over the admin API and by ``sluice stats <name>``.

Each file starts with comment lines: what it answers, then its parameters::

    -- Spend per key since a time.
    -- params: since_ns UInt64 = 0, tenant_id String = ''

The SQL refers to them as ClickHouse query parameters (``{since_ns:UInt64}``),
never pasted in, so a caller's value cannot change the query.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from schemas.analytics import QueryRequest

NAMED_DIR = Path(__file__).parent / "named"
_PARAM = re.compile(r"\s*([a-z_][a-z0-9_]*)\s+([A-Za-z0-9()]+)\s*=\s*('(?:[^']|'')*'|-?\d+)\s*")


class Named(msgspec.Struct):
    sql: str
    # param name -> (ClickHouse type, default)
    params: dict[str, tuple[str, int | str]]
    description: str = ""

    @property
    def per_tenant(self) -> bool:
        """It can be narrowed to one tenant: a tenant admin may run it, for its own."""
        return "tenant_id" in self.params


def parse(text: str) -> Named:
    description, params = [], {}
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        comment = line[2:].strip()
        if comment.startswith("params:"):
            for part in comment[len("params:") :].split(","):
                m = _PARAM.fullmatch(part)
                if m is None:
                    raise ValueError(f"cannot read parameter {part!r}: write 'name Type = default'")
                name, type_, default = m.groups()
                params[name] = (type_, default[1:-1].replace("''", "'") if default.startswith("'") else int(default))
        else:
            description.append(comment)
    return Named(sql=text, params=params, description=" ".join(description))


def load(directory: Path = NAMED_DIR) -> dict[str, Named]:
    return {path.stem: parse(path.read_text()) for path in sorted(directory.glob("*.sql"))}


NAMED: dict[str, Named] = load()


class UnknownQuery(ValueError):
    pass


def bind(request: QueryRequest) -> tuple[str, dict[str, int | str]]:
    named = NAMED.get(request.name)
    if named is None:
        raise UnknownQuery(f"unknown query {request.name!r}; known: {sorted(NAMED)}")
    params: dict[str, int | str] = {}
    for key, (type_, default) in named.params.items():
        value = request.params.get(key, default)
        params[key] = int(value) if type_.startswith(("UInt", "Int")) else str(value)
    return named.sql, params
